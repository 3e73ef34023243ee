/* diff: the paths a layer or ref changes against its parent.  It walks only the object's own
 * diff directory (the layer's diff, or the ref's upper) and asks the layer stack (fs/stack)
 * whether each path exists below it, so its cost follows the change, not the parent's size:
 *   A path   added (not in the parent's view)
 *   C path   changed (present in the parent's view; directories holding changes included)
 *   D path   deleted (a whiteout, or a name an opaque directory hides)
 * A directory with a redirect (a renamed directory) shows the lower content of another path at
 * its own: there and in every directory below it, the view is compared with what the parent
 * shows at the same path: names only the parent shows are deleted, names the redirect brings in
 * are added or changed, and so is everything below them.
 * Output is sorted by path. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "layerfs/stack.h"

typedef struct change {
	char kind;
	char *path;
} change;

typedef struct diff_walk {
	lyr_stack *stack; /* layer 0: the object's own diff; 1..: its parent chain */
	bool has_parent;
	change *v;
	size_t n, cap;
} diff_walk;

static int add_change(diff_walk *w, char kind, const char *dir, const char *name)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		change *nv = realloc(w->v, w->cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		w->v = nv;
	}
	char *path;
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	w->v[w->n++] = (change){kind, path};
	return 0;
}

/* 1 when PATH exists in the parent's view, 0 when not, -errno. */
static int in_parent(diff_walk *w, const char *path, lyr_stack_node *ret)
{
	if (!w->has_parent)
		return 0;
	lyr_stack_node node = {0};
	int r = lyr_stack_resolve(w->stack, 1, path, &node);
	if (r == -ENOENT || r == -ENOTDIR)
		return 0;
	if (r < 0)
		return r;
	if (ret)
		*ret = node;
	else
		lyr_stack_node_clear(&node);
	return 1;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names the parent shows in DIR that the opaque directory at DIR hides: each one is deleted. */
static int hidden_by_opaque(diff_walk *w, const char *dir, char **own, size_t n_own)
{
	lyr_stack_node node = {0};
	int r = in_parent(w, dir[0] ? dir : "/", &node);
	if (r <= 0)
		return r;
	lyr_stack_list list = {0};
	if (S_ISDIR(node.st.st_mode))
		r = lyr_stack_list_dir(w->stack, &node, &list);
	lyr_stack_node_clear(&node);
	for (size_t i = 0; r >= 0 && i < list.n; i++) {
		const char *name = list.entries[i].name;
		if (!bsearch(&name, own, n_own, sizeof(char *), name_cmp))
			r = add_change(w, 'D', dir, name);
	}
	lyr_stack_list_clear(&list);
	return r < 0 ? r : 0;
}

static bool own_name(const char *name, char **own, size_t n_own)
{
	return n_own && bsearch(&name, own, n_own, sizeof(char *), name_cmp);
}

/* True when NAME is in LIST. */
static bool listed(const lyr_stack_list *list, const char *name)
{
	for (size_t i = 0; i < list->n; i++)
		if (!strcmp(list->entries[i].name, name))
			return true;
	return false;
}

/* Lists what the stack from layer FROM shows at PATH (empty when nothing or no directory). */
static int list_at(diff_walk *w, unsigned from, const char *path, lyr_stack_list *ret)
{
	*ret = (lyr_stack_list){0};
	if (from == 1 && !w->has_parent)
		return 0;
	lyr_stack_node node = {0};
	int r = lyr_stack_resolve(w->stack, from, path[0] ? path : "/", &node);
	if (r == -ENOENT || r == -ENOTDIR)
		return 0;
	if (r < 0)
		return r;
	if (S_ISDIR(node.st.st_mode))
		r = lyr_stack_list_dir(w->stack, &node, ret);
	lyr_stack_node_clear(&node);
	return r;
}

/* DIR, under a redirect: the names the parent shows there that the view does not are deleted;
 * the names the view shows from the layers below (not the OWN names of layer 0, which the walk
 * reports) are added or changed, and so is everything below them. */
static int moved_content(diff_walk *w, const char *dir, char **own, size_t n_own)
{
	lyr_stack_list now, before;
	int r = list_at(w, 0, dir, &now);
	if (r < 0)
		return r;
	if ((r = list_at(w, 1, dir, &before)) < 0) {
		lyr_stack_list_clear(&now);
		return r;
	}
	for (size_t i = 0; r >= 0 && i < before.n; i++)
		if (!listed(&now, before.entries[i].name))
			r = add_change(w, 'D', dir, before.entries[i].name);
	for (size_t i = 0; r >= 0 && i < now.n; i++) {
		const lyr_stack_dirent *e = &now.entries[i];
		if (own_name(e->name, own, n_own))
			continue;
		r = add_change(w, listed(&before, e->name) ? 'C' : 'A', dir, e->name);
		_cleanup_free_ char *path = NULL;
		if (r >= 0 && asprintf(&path, "%s/%s", dir, e->name) < 0)
			r = -ENOMEM;
		if (r >= 0)
			r = moved_content(w, path, NULL, 0);
	}
	lyr_stack_list_clear(&now);
	lyr_stack_list_clear(&before);
	return r;
}

/* True when the directory at FD redirects its lower parts to another path than DIR. */
static bool redirected(int fd, const char *dir)
{
	char v[4096];
	ssize_t n = lyr_stack_xattr_get(fd, LYR_OVL_REDIRECT, v, sizeof(v));
	return n > 0 && (size_t)n < sizeof(v) && strcmp(v, dir) != 0;
}

/* Walks directory DIR ("" for the root) of layer 0, open at DIR_FD (consumed); MOVED: an
 * ancestor's redirect brought its lower content from another path. */
static int walk(diff_walk *w, int dir_fd, const char *dir, bool moved)
{
	DIR *d = fdopendir(dir_fd);
	if (!d) {
		close(dir_fd);
		return -errno;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	int r = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 32;
			char **nn = realloc(names, cap * sizeof(char *));
			if (!nn) {
				r = -ENOMEM;
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(e->d_name))) {
			r = -ENOMEM;
			break;
		}
		n++;
	}
	if (r >= 0 && n > 0) /* an empty directory has no array (qsort takes no NULL) */
		qsort(names, n, sizeof(char *), name_cmp);

	int fd = dirfd(d);
	if (r >= 0) {
		r = lyr_stack_dir_opaque(fd);
		if (r > 0) {
			r = hidden_by_opaque(w, dir, names, n);
			moved = false; /* nothing below it shows any more */
		} else if (r == 0 && w->has_parent && (moved || redirected(fd, dir))) {
			moved = true;
			r = moved_content(w, dir, names, n);
		}
	}
	for (size_t i = 0; r >= 0 && i < n; i++) {
		const char *name = names[i];
		if (!strcmp(name, LYR_WH_OPAQUE))
			continue;
		/* under a redirect, what is deleted was found by comparing with the parent */
		if (moved && lyr_stack_is_marker_name(name))
			continue;
		if (lyr_stack_is_marker_name(name)) {
			r = add_change(w, 'D', dir, name + strlen(LYR_WH_PREFIX));
			continue;
		}
		struct stat st;
		if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if (lyr_stack_is_whiteout(&st)) {
			if (!moved)
				r = add_change(w, 'D', dir, name);
			continue;
		}
		_cleanup_free_ char *path = NULL;
		if (asprintf(&path, "%s/%s", dir, name) < 0) {
			r = -ENOMEM;
			break;
		}
		r = in_parent(w, path, NULL);
		if (r >= 0)
			r = add_change(w, r ? 'C' : 'A', dir, name);
		if (r >= 0 && S_ISDIR(st.st_mode)) {
			int sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			r = sub < 0 ? -errno : walk(w, sub, path, moved);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return r;
}

static int change_cmp(const void *a, const void *b)
{
	const change *x = a, *y = b;
	return strcmp(x->path, y->path);
}

int cmd_diff(lyr_cli *cli, int argc, char **argv)
{
	const cli_command *cmd = cli_find("diff");
	int i = cli_parse(cli, cmd, argc, argv, NULL, 0, NULL, NULL);
	if (argc - i != 1)
		return cli_usage(cmd->name, "expects one ID");
	lyr_obj_kind kind;
	char id[LYR_ID_MAX];
	if (cli_resolve(cli, argv[i], LYR_OBJ_NONE, &kind, id) < 0)
		return EXIT_FAIL;
	if (kind == LYR_OBJ_REF && cli_ref_upper_check(cli, "diff", argv[i], id) != EXIT_OK)
		return EXIT_FAIL;

	/* The stack: the object's own directory (a ref's upper, a layer's diff), then its parent's
	 * chain. */
	_cleanup_(cli_view_clear) cli_view view = {0};
	int r = cli_view_get(cli, kind, id, &view);
	if (r < 0)
		return cli_fail("diff '%s': %s", argv[i], cli_strerror(r));
	size_t n_dirs;
	_cleanup_free_ const char **dirs = cli_view_stack(&view, &n_dirs);
	if (!dirs)
		return cli_fail("out of memory");

	diff_walk w = {.has_parent = n_dirs > 1};
	r = lyr_stack_open(dirs, n_dirs, NULL, &w.stack);
	int fd = r < 0 ? -1 : open(dirs[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r >= 0)
		r = fd < 0 ? -errno : walk(&w, fd, "", false);
	lyr_stack_free(w.stack);

	if (r >= 0) {
		if (w.n > 0) /* no changes: no array, and qsort takes no NULL */
			qsort(w.v, w.n, sizeof(change), change_cmp);
		json_out j;
		if (cli->json) {
			json_begin(&j, stdout);
			json_arr_open(&j, "changes");
		}
		for (size_t k = 0; k < w.n; k++) {
			char kind_text[2] = {w.v[k].kind, '\0'};
			if (cli->json) {
				json_obj_open(&j, NULL);
				json_str(&j, "kind", kind_text);
				json_str(&j, "path", w.v[k].path);
				json_obj_close(&j);
			} else {
				printf("%s %s\n", kind_text, w.v[k].path);
			}
		}
		if (cli->json) {
			json_arr_close(&j);
			json_end(&j);
		}
	}
	for (size_t k = 0; k < w.n; k++)
		free(w.v[k].path);
	free(w.v);
	if (r < 0)
		return cli_fail("diff '%s': %s", argv[i], cli_strerror(r));
	return EXIT_OK;
}
