/* Hooks for tests of db/ only; nothing else calls them. */
#pragma once

#include <stdint.h>

#include "layerfs/store.h"

/* Overwrites the store's format record (to test the refusal of newer stores). */
int lyr_store_debug_set_format(lyr_store *s, uint32_t format);

/* Creates a ref with the chosen ID ID (64 hex), like lyr_ref_new (to test prefixes). */
int lyr_store_debug_ref_new(lyr_store *s, const char *id, const char *parent_id);
