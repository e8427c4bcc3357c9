/* The device thread's event loop: one epoll set; each fd has a callback.
 * Callbacks run on the loop's thread only, one at a time. Watches may be
 * added or removed from any thread (a driver activates a device from a
 * vCPU thread). */
#ifndef VMM_EVLOOP_H
#define VMM_EVLOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define EVLOOP_MAX_WATCHES 1100  /* vsock may hold up to 1023 connections */

typedef void (*ev_fn)(void *arg, uint32_t events);

struct ev_watch {
	int fd;
	ev_fn fn;
	void *arg;
	bool used;
};

struct evloop {
	int epfd;
	pthread_mutex_t lock;     /* guards watches */
	bool stop;
	struct ev_watch watches[EVLOOP_MAX_WATCHES];
};

/* Create the epoll set; 0 or -errno. */
int ev_init(struct evloop *l);
/* Watch fd for events (EPOLLIN, EPOLLOUT...); fn(arg, events) runs when it
 * is ready. 0 or -errno (-ENOSPC when the table is full). */
int ev_add(struct evloop *l, int fd, uint32_t events, ev_fn fn, void *arg);
/* Change the events watched for fd; 0 or -errno. */
int ev_mod(struct evloop *l, int fd, uint32_t events);
/* Stop watching fd (does not close it); safe from inside a callback. */
void ev_del(struct evloop *l, int fd);
/* Dispatch until ev_stop(); returns 0 or -errno on an epoll failure. */
int ev_run(struct evloop *l);
/* Wait at most timeout_ms (0: don't, -1: forever) for one batch of events
 * and dispatch it, as one turn of ev_run() (tests and fuzzers drive the
 * loop this way). The events seen (0 on EINTR) or -errno. */
int ev_run_once(struct evloop *l, int timeout_ms);
void ev_stop(struct evloop *l);
void ev_close(struct evloop *l);

#endif
