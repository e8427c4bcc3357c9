/* Exit statuses of the kiln command line. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,   /* the operation failed */
	EXIT_USAGE = 2,  /* bad command line */
};

#endif
