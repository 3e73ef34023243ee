/* Image configs kept with layers: a layer that was the top of a loaded image keeps that image's
 * config (the OCI config JSON, as the image had it) in layers/<hex>/image-config.json, beside
 * its diff.  It is metadata about how the layer was delivered, not content: it is not hashed,
 * and the same layer loaded from another image takes that image's config (the last one wins).
 * Writes are a rename of a complete temporary file under the namespace lock, so readers see the
 * old or the new config and a layer being removed is never written into. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db-int.h"

#define CONFIG_NAME "image-config.json"
#define CONFIG_MAX (4 << 20)

int lyr_layer_config_set(lyr_store *s, const char *id, const char *json, size_t len)
{
	char dir[160], tmp[200], to[200];
	snprintf(dir, sizeof dir, "layers/%s", layer_hex(id));
	snprintf(tmp, sizeof tmp, "%s/." CONFIG_NAME ".%d", dir, (int)getpid());
	snprintf(to, sizeof to, "%s/" CONFIG_NAME, dir);
	int r = ns_lock(s);
	if (r < 0)
		return r;
	lyr_layer_info info;
	r = lyr_layer_get(s, id, &info);
	if (r == 0) {
		lyr_layer_info_clear(&info);
		int fd = openat(s->rootfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			r = -errno;
		else {
			if (write(fd, json, len) != (ssize_t)len)
				r = -EIO;
			if (close(fd) < 0 && r == 0)
				r = -errno;
			if (r == 0 && renameat(s->rootfd, tmp, s->rootfd, to) < 0)
				r = -errno;
			if (r < 0)
				unlinkat(s->rootfd, tmp, 0);
		}
		if (r < 0)
			db_seterr("layer '%s': keeping the image config: %s", id, strerror(-r));
	}
	ns_unlock(s);
	return r;
}

int lyr_layer_config_get(lyr_store *s, const char *id, char **ret)
{
	char path[200];
	snprintf(path, sizeof path, "layers/%s/" CONFIG_NAME, layer_hex(id));
	int fd = openat(s->rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : st.st_size > CONFIG_MAX ? -EFBIG : 0;
	char *buf = r == 0 ? malloc((size_t)st.st_size + 1) : NULL;
	if (r == 0 && !buf)
		r = -ENOMEM;
	if (r == 0 && read(fd, buf, (size_t)st.st_size) != st.st_size)
		r = -EIO;
	close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[st.st_size] = '\0';
	*ret = buf;
	return 0;
}
