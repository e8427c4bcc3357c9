/* The step scripts of agent/script.c: the exact text, and what a
 * shell makes of it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/script.h"
#include "tests/unit/suites.h"

#define GREEN "\\033[32;1m"
#define RESET "\\033[0;m"
#define ECHO "printf '" GREEN "$ %s" RESET "\\n' "

static char *render(const char *const *cmds, size_t n)
{
	char *out = NULL;
	size_t len = 0;

	ck_assert_int_eq(script_render(cmds, n, &out, &len), 0);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(len, strlen(out));
	return out;
}

START_TEST(one_command_per_echo)
{
	const char *cmds[] = { "echo one", "make test" };
	char *s = render(cmds, 2);

	ck_assert_str_eq(s, ECHO "'echo one'\necho one\n" ECHO "'make test'\nmake test\n");
	free(s);
}
END_TEST

START_TEST(no_commands_is_empty)
{
	char *s = render(NULL, 0);

	ck_assert_str_eq(s, "");
	free(s);
}
END_TEST

/* Single quotes are closed, escaped and reopened; nothing else needs it. */
START_TEST(quotes_escaped)
{
	const char *cmds[] = { "echo 'it'\"'\"'s' $HOME %s \\n `x`" };
	char *s = render(cmds, 1);

	ck_assert_str_eq(s, ECHO "'echo '\\''it'\\''\"'\\''\"'\\''s'\\'' $HOME %s \\n `x`'\n"
			    "echo 'it'\"'\"'s' $HOME %s \\n `x`\n");
	free(s);
}
END_TEST

START_TEST(multi_line_collapsed)
{
	const char *cmds[] = { "if true; then\n  echo yes\nfi" };
	char *s = render(cmds, 1);

	ck_assert_str_eq(s, ECHO "'if true; then # collapsed multi-line command'\n"
			    "if true; then\n  echo yes\nfi\n");
	free(s);
}
END_TEST

/* Surrounding whitespace goes, as gitlab-runner's TrimSpace does; an empty
 * command is a bare echo (an empty log line). */
START_TEST(trimmed_and_empty)
{
	const char *cmds[] = { "  \techo x \n", "", "\n \n" };
	char *s = render(cmds, 3);

	ck_assert_str_eq(s, ECHO "'echo x'\necho x\necho\n\necho\n\n");
	free(s);
}
END_TEST

START_TEST(too_big)
{
	size_t n = SCRIPT_MAX / 2 + 1;
	char *cmd = malloc(n + 1), *out = NULL;
	const char *cmds[1] = { cmd };
	size_t len = 0;

	ck_assert_ptr_nonnull(cmd);
	memset(cmd, 'x', n);
	cmd[n] = '\0';
	/* Echoed once and run once: over the ceiling. */
	ck_assert_int_eq(script_render(cmds, 1, &out, &len), -E2BIG);
	ck_assert_ptr_null(out);
	free(cmd);
}
END_TEST

/* What a POSIX shell prints for the script: the echo shows each command's
 * text exactly, whatever quoting it holds, and -e stops at a failure. */
START_TEST(shell_runs_it)
{
	const char *cmds[] = { "printf '%s\\n' \"it's\" 100%", "printf '%s\\n' a\\ b '\\n'", "false", "echo never" };
	char path[] = "/tmp/kiln-script-XXXXXX", cmd[64], out[1024];
	char *s = render(cmds, 4);
	FILE *p;
	size_t n;
	int fd = mkstemp(path), status;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	close(fd);
	snprintf(cmd, sizeof(cmd), "sh -e %s", path);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	status = pclose(p);
	unlink(path);
	ck_assert_str_eq(out,
			 "\033[32;1m$ printf '%s\\n' \"it's\" 100%\033[0;m\n"
			 "it's\n100%\n"
			 "\033[32;1m$ printf '%s\\n' a\\ b '\\n'\033[0;m\n"
			 "a b\n\\n\n"
			 "\033[32;1m$ false\033[0;m\n");
	ck_assert_int_ne(status, 0);
	free(s);
}
END_TEST

Suite *agentscript_suite(void)
{
	Suite *s = suite_create("agentscript");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, one_command_per_echo);
	tcase_add_test(tc, no_commands_is_empty);
	tcase_add_test(tc, quotes_escaped);
	tcase_add_test(tc, multi_line_collapsed);
	tcase_add_test(tc, trimmed_and_empty);
	tcase_add_test(tc, too_big);
	tcase_add_test(tc, shell_runs_it);
	suite_add_tcase(s, tc);
	return s;
}
