#include "lib/treewalk.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

struct walk {
	kiln_walk_fn fn;
	void *arg;
	int max_depth;
	bool stop;
	char rel[PATH_MAX];
};

/* List the folder on fd, whose path is w->rel[0..rel_len); false when it
 * cannot be read. */
static bool walk_dir(struct walk *w, int fd, size_t rel_len, int depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;

	if (!d) {
		close(fd);
		return false;
	}
	while (!w->stop && (de = readdir(d))) {
		size_t n = strlen(de->d_name), sub_len = rel_len + (rel_len ? 1 : 0) + n;
		enum kiln_walk_step step;
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || sub_len + 1 > PATH_MAX)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (rel_len)
			w->rel[rel_len] = '/';
		memcpy(w->rel + rel_len + (rel_len ? 1 : 0), de->d_name, n + 1);
		step = w->fn(w->arg, w->rel, &st);
		if (step == KILN_WALK_STOP) {
			w->stop = true;
		} else if (step == KILN_WALK_NEXT && S_ISDIR(st.st_mode) && depth < w->max_depth) {
			int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub >= 0)
				walk_dir(w, sub, sub_len, depth + 1);
		}
		w->rel[rel_len] = '\0';
	}
	closedir(d);
	return true;
}

int kiln_treewalk(int fd, int max_depth, kiln_walk_fn fn, void *arg)
{
	struct walk w = { .fn = fn, .arg = arg, .max_depth = max_depth };

	w.rel[0] = '\0';
	return walk_dir(&w, fd, 0, 0) ? 0 : -1;
}
