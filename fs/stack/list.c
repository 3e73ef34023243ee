/* Merged directory listings.  Parts are read topmost first; a name is listed the first time it is
 * seen, and whiteouts (0/0 devices and ".wh.NAME" markers) enter the seen set without being listed,
 * so they hide the name in every layer below.  The seen set is an open-addressing hash table of
 * names; a listing of N names costs O(N) time and memory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/stack.h"

typedef struct nameset {
	size_t cap, used;
	char **slots; /* borrowed pointers */
} nameset;

static uint64_t hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static int set_grow(nameset *set)
{
	size_t cap = set->cap ? set->cap * 2 : 64;
	char **slots = calloc(cap, sizeof(char *));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < set->cap; i++) {
		if (!set->slots[i])
			continue;
		size_t k = hash_name(set->slots[i]) & (cap - 1);
		while (slots[k])
			k = (k + 1) & (cap - 1);
		slots[k] = set->slots[i];
	}
	free(set->slots);
	set->slots = slots;
	set->cap = cap;
	return 0;
}

/* 1 when NAME was already in the set, 0 when added (the set keeps the pointer), -ENOMEM. */
static int set_add(nameset *set, char *name)
{
	if ((set->used + 1) * 2 > set->cap) {
		int r = set_grow(set);
		if (r < 0)
			return r;
	}
	size_t k = hash_name(name) & (set->cap - 1);
	while (set->slots[k]) {
		if (strcmp(set->slots[k], name) == 0)
			return 1;
		k = (k + 1) & (set->cap - 1);
	}
	set->slots[k] = name;
	set->used++;
	return 0;
}

static bool set_has(const nameset *set, const char *name)
{
	if (!set->cap)
		return false;
	size_t k = hash_name(name) & (set->cap - 1);
	while (set->slots[k]) {
		if (strcmp(set->slots[k], name) == 0)
			return true;
		k = (k + 1) & (set->cap - 1);
	}
	return false;
}

void lyr_stack_list_clear(lyr_stack_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->n; i++)
		free(list->entries[i].name);
	free(list->entries);
	list->entries = NULL;
	list->n = 0;
}

typedef struct builder {
	lyr_stack_list list;
	size_t cap;
	char **hidden;
	size_t nhidden, hcap;
	nameset seen;
} builder;

static int push_entry(builder *b, const char *name, unsigned layer, unsigned char type, ino_t ino)
{
	if (b->list.n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;
		lyr_stack_dirent *e = realloc(b->list.entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		b->list.entries = e;
		b->cap = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	int r = set_add(&b->seen, copy);
	if (r != 0) {
		free(copy);
		return r < 0 ? r : 0;
	}
	b->list.entries[b->list.n++] = (lyr_stack_dirent){copy, layer, type, ino};
	return 0;
}

static int push_hidden(builder *b, const char *name)
{
	if (set_has(&b->seen, name))
		return 0;
	if (b->nhidden == b->hcap) {
		size_t cap = b->hcap ? b->hcap * 2 : 16;
		char **h = realloc(b->hidden, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		b->hidden = h;
		b->hcap = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	int r = set_add(&b->seen, copy);
	if (r != 0) {
		free(copy);
		return r < 0 ? r : 0;
	}
	b->hidden[b->nhidden++] = copy;
	return 0;
}

static int list_part(builder *b, const lyr_stack_part *p)
{
	/* listing never moves a layer's atime */
	int fd = lyr_open_noatime(p->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (!d) {
		int r = -errno;
		close(fd);
		return r;
	}
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de)
			return errno ? -errno : 0;
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		int r;
		if (lyr_stack_is_marker_name(name)) {
			if (strcmp(name, LYR_WH_OPAQUE) == 0)
				continue;
			r = push_hidden(b, name + sizeof(LYR_WH_PREFIX) - 1);
			if (r < 0)
				return r;
			continue;
		}
		if (set_has(&b->seen, name))
			continue;
		unsigned char type = de->d_type;
		if (type == DT_CHR || type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno == ENOENT)
					continue;
				return -errno;
			}
			if (lyr_stack_is_whiteout(&st)) {
				r = push_hidden(b, name);
				if (r < 0)
					return r;
				continue;
			}
			type = IFTODT(st.st_mode);
		}
		r = push_entry(b, name, p->layer, type, de->d_ino);
		if (r < 0)
			return r;
	}
}

int lyr_stack_list_dir(const lyr_stack *s, const lyr_stack_node *dir, lyr_stack_list *ret)
{
	(void)s;
	if (!S_ISDIR(dir->st.st_mode))
		return -ENOTDIR;
	builder b = {0};
	int r = 0;
	for (unsigned i = 0; i < dir->nparts && r >= 0; i++)
		r = list_part(&b, &dir->parts[i]);
	for (size_t i = 0; i < b.nhidden; i++)
		free(b.hidden[i]);
	free(b.hidden);
	free(b.seen.slots);
	if (r < 0) {
		lyr_stack_list_clear(&b.list);
		return r;
	}
	*ret = b.list;
	return 0;
}
