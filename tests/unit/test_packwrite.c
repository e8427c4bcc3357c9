/* The pack writer (workspace/packwrite): the object id set, a tree's
 * objects collected and written as one pack that git reads back whole, and
 * object files linked into another repository. The source repository is
 * made with git in /tmp. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <git2.h>

#include "lib/spawn.h"
#include "workspace/packwrite.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define PW_GIT "git -c safe.directory='*' -c init.defaultBranch=main"

static char dir[64];

/* dir/src: two commits; the second adds a folder and changes a file, and a
 * tree shared with the first (docs/) stays the same. */
static void make_repo(void)
{
	snprintf(dir, sizeof(dir), "%s", test_tmpdir());
	ck_assert_int_eq(test_sh("set -e; cd '%s'; exec >/dev/null 2>&1\n"
				 "export GIT_CONFIG_NOSYSTEM=1 HOME='%s' GIT_AUTHOR_NAME=K GIT_AUTHOR_EMAIL=k@x.invalid"
				 " GIT_COMMITTER_NAME=K GIT_COMMITTER_EMAIL=k@x.invalid\n"
				 PW_GIT " init -q src; cd src\n"
				 "mkdir docs; echo guide > docs/guide.txt; echo one > a.txt\n"
				 PW_GIT " add .; " PW_GIT " commit -q -m one\n"
				 "mkdir -p lib/deep; echo x > lib/deep/x.c; echo two >> a.txt\n"
				 PW_GIT " add .; " PW_GIT " commit -q -m two\n",
				 dir, dir),
			 0);
}

static void drop_repo(void)
{
	test_sh("rm -rf '%s'", dir);
}

static git_oid oid_of(unsigned char b)
{
	git_oid id;

	memset(&id, b, sizeof(id));
	return id;
}

START_TEST(oidset_order_duplicates_and_ceiling)
{
	struct oidset s;
	git_oid a = oid_of(1), b = oid_of(2), c = oid_of(3);
	int i;

	oidset_init(&s, 2);
	ck_assert_int_eq(oidset_add(&s, &b), 1);
	ck_assert_int_eq(oidset_add(&s, &a), 1);
	ck_assert_int_eq(oidset_add(&s, &b), 0);  /* there already */
	ck_assert(oidset_has(&s, &a) && oidset_has(&s, &b) && !oidset_has(&s, &c));
	errno = 0;
	ck_assert_int_eq(oidset_add(&s, &c), -1);  /* the ceiling */
	ck_assert_int_eq(errno, E2BIG);
	ck_assert_uint_eq(s.n, 2);
	ck_assert(git_oid_equal(&s.list[0], &b) && git_oid_equal(&s.list[1], &a));  /* insertion order */
	oidset_free(&s);
	ck_assert_uint_eq(s.n, 0);
	ck_assert(!oidset_has(&s, &a));

	/* Past several growths of the table, every id still found once. */
	oidset_init(&s, 5000);
	for (i = 0; i < 5000; i++) {
		git_oid id = { 0 };

		memcpy(id.id, &i, sizeof(i));
		id.id[19] = 1;
		ck_assert_int_eq(oidset_add(&s, &id), 1);
	}
	for (i = 0; i < 5000; i++) {
		git_oid id = { 0 };

		memcpy(id.id, &i, sizeof(i));
		id.id[19] = 1;
		ck_assert(oidset_has(&s, &id));
		ck_assert_int_eq(oidset_add(&s, &id), 0);
	}
	oidset_free(&s);
}
END_TEST

/* HEAD's tree and all below it, written as one pack into a fresh
 * repository: git there checks out the same files. With the first commit's
 * objects to skip, only what the second added goes in. */
START_TEST(tree_written_as_one_pack)
{
	char src[128], dst[128], pack_dir[160], cmd[512];
	git_repository *repo = NULL;
	git_odb *odb = NULL, *skip = NULL;
	git_object *head = NULL, *first = NULL;
	struct oidset set, newer;
	struct kiln_err e = { 0 };
	git_repository *old = NULL;

	make_repo();
	snprintf(src, sizeof(src), "%s/src", dir);
	ck_assert_int_eq(git_repository_open(&repo, src), 0);
	ck_assert_int_eq(git_revparse_single(&head, repo, "HEAD^{tree}"), 0);
	ck_assert_int_eq(git_revparse_single(&first, repo, "HEAD~1^{tree}"), 0);
	ck_assert_int_eq(git_repository_odb(&odb, repo), 0);

	/* root, docs, lib, lib/deep; a.txt, guide.txt, x.c */
	oidset_init(&set, 100);
	ck_assert_int_eq(pack_add_tree(repo, &set, git_object_id(head), NULL), 0);
	ck_assert_uint_eq(set.n, 7);
	ck_assert(git_oid_equal(&set.list[0], git_object_id(head)));

	snprintf(dst, sizeof(dst), "%s/dst", dir);
	ck_assert_int_eq(test_sh(PW_GIT " init -q --bare '%s' >/dev/null", dst), 0);
	snprintf(pack_dir, sizeof(pack_dir), "%s/objects/pack", dst);
	ck_assert_msg(pack_write(odb, &set, pack_dir, &e) == KILN_OK, "%s", e.msg);
	snprintf(cmd, sizeof(cmd), "n=$(ls '%s'/*.pack | wc -l) && [ $n = 1 ] && " PW_GIT " -C '%s' verify-pack '%s'/*.idx",
		 pack_dir, dst, pack_dir);
	ck_assert_int_eq(test_sh("%s", cmd), 0);
	ck_assert_int_eq(test_sh("[ \"$(" PW_GIT " -C '%s' cat-file -p %s:lib/deep/x.c)\" = x ]", dst,
				 git_oid_tostr_s(git_object_id(head))),
			 0);
	ck_assert_int_eq(test_sh("[ \"$(" PW_GIT " -C '%s' ls-tree -r --name-only %s | tr '\\n' ' ')\" = "
				 "'a.txt docs/guide.txt lib/deep/x.c ' ]",
				 dst, git_oid_tostr_s(git_object_id(head))),
			 0);

	/* The first commit's objects in a repository of their own, as a
	 * mirror that has them: only the second commit's new objects. */
	ck_assert_int_eq(test_sh("cd '%s' && " PW_GIT " clone -q --bare --no-local src old.git >/dev/null 2>&1 && "
				 PW_GIT " -C old.git update-ref refs/heads/main HEAD~1 && "
				 PW_GIT " -C old.git gc -q --prune=now >/dev/null 2>&1", dir),
			 0);
	snprintf(cmd, sizeof(cmd), "%s/old.git", dir);
	ck_assert_int_eq(git_repository_open(&old, cmd), 0);
	ck_assert_int_eq(git_repository_odb(&skip, old), 0);
	oidset_init(&newer, 100);
	ck_assert_int_eq(pack_add_tree(repo, &newer, git_object_id(head), skip), 0);
	/* root, lib, lib/deep, a.txt (changed), x.c; not docs/ or guide.txt */
	ck_assert_uint_eq(newer.n, 5);
	ck_assert(!oidset_has(&newer, git_object_id(first)));

	oidset_free(&newer);
	oidset_free(&set);
	git_odb_free(skip);
	git_repository_free(old);
	git_odb_free(odb);
	git_object_free(first);
	git_object_free(head);
	git_repository_free(repo);
	drop_repo();
}
END_TEST

/* A set that is full stops the walk with a libgit2 error. */
START_TEST(tree_walk_hits_the_ceiling)
{
	char src[128];
	git_repository *repo = NULL;
	git_object *head = NULL;
	struct oidset set;

	make_repo();
	snprintf(src, sizeof(src), "%s/src", dir);
	ck_assert_int_eq(git_repository_open(&repo, src), 0);
	ck_assert_int_eq(git_revparse_single(&head, repo, "HEAD^{tree}"), 0);
	oidset_init(&set, 3);
	ck_assert_int_eq(pack_add_tree(repo, &set, git_object_id(head), NULL), -1);
	ck_assert_ptr_nonnull(git_error_last());
	oidset_free(&set);
	git_object_free(head);
	git_repository_free(repo);
	drop_repo();
}
END_TEST

/* Every object file linked (or copied) into another repository: git there
 * finds the whole history and fsck is clean. */
START_TEST(objects_linked_into_another_repository)
{
	char src[128], dst[128];
	struct kiln_err e = { 0 };

	make_repo();
	snprintf(src, sizeof(src), "%s/src/.git/objects", dir);
	snprintf(dst, sizeof(dst), "%s/dst", dir);
	ck_assert_int_eq(test_sh("cd '%s/src' && " PW_GIT " repack -q -d >/dev/null && echo loose > l.txt && "
				 PW_GIT " hash-object -w l.txt >/dev/null", dir),
			 0);
	ck_assert_int_eq(test_sh(PW_GIT " init -q --bare '%s' >/dev/null", dst), 0);
	snprintf(dst, sizeof(dst), "%s/dst/objects", dir);
	ck_assert_msg(objects_link(src, dst, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(test_sh("cd '%s/dst' && " PW_GIT " update-ref refs/heads/main $(" PW_GIT
				 " -C ../src rev-parse HEAD) && [ $(" PW_GIT " rev-list --count main) = 2 ] && "
				 PW_GIT " fsck --no-dangling --no-progress >/dev/null && " PW_GIT " cat-file -e $(" PW_GIT
				 " -C ../src hash-object ../src/l.txt)",
				 dir),
			 0);
	ck_assert_int_eq(test_sh("[ ! -e '%s/dst/objects/info/alternates' ]", dir), 0);
	drop_repo();
}
END_TEST

static void libgit2_up(void)
{
	git_libgit2_init();
}

static void libgit2_down(void)
{
	git_libgit2_shutdown();
}

Suite *packwrite_suite(void)
{
	Suite *s = suite_create("packwrite");
	TCase *tc = tcase_create("core");
	char path[PATH_MAX];

	tcase_add_test(tc, oidset_order_duplicates_and_ceiling);
	if (kiln_which(NULL, "git", path, sizeof(path))) {
		tcase_add_unchecked_fixture(tc, libgit2_up, libgit2_down);
		tcase_set_timeout(tc, 60);
		tcase_add_test(tc, tree_written_as_one_pack);
		tcase_add_test(tc, tree_walk_hits_the_ceiling);
		tcase_add_test(tc, objects_linked_into_another_repository);
	} else {
		fprintf(stderr, "packwrite: tests skipped: they need git\n");
	}
	suite_add_tcase(s, tc);
	return s;
}
