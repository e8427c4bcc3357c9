#include "vmm/evloop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int ev_init(struct evloop *l)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? -errno : 0;
}

int ev_add(struct evloop *l, int fd, uint32_t events, ev_fn fn, void *arg)
{
	struct epoll_event ev = { .events = events };
	int i, rc = 0;

	pthread_mutex_lock(&l->lock);
	for (i = 0; i < EVLOOP_MAX_WATCHES && l->watches[i].used; i++)
		;
	if (i == EVLOOP_MAX_WATCHES) {
		rc = -ENOSPC;
		goto out;
	}
	ev.data.u32 = (uint32_t)i;
	l->watches[i] = (struct ev_watch){ fd, fn, arg, true };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		rc = -errno;
		l->watches[i] = (struct ev_watch){ -1, NULL, NULL, false };
	}
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

static int find(struct evloop *l, int fd)
{
	int i;

	for (i = 0; i < EVLOOP_MAX_WATCHES; i++)
		if (l->watches[i].used && l->watches[i].fd == fd)
			return i;
	return -1;
}

int ev_mod(struct evloop *l, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events };
	int i, rc;

	pthread_mutex_lock(&l->lock);
	i = find(l, fd);
	ev.data.u32 = (uint32_t)i;
	rc = i < 0 ? -ENOENT : epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
	pthread_mutex_unlock(&l->lock);
	return rc;
}

void ev_del(struct evloop *l, int fd)
{
	int i;

	pthread_mutex_lock(&l->lock);
	i = find(l, fd);
	if (i >= 0) {
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
		l->watches[i] = (struct ev_watch){ -1, NULL, NULL, false };
	}
	pthread_mutex_unlock(&l->lock);
}

int ev_run_once(struct evloop *l, int timeout_ms)
{
	struct epoll_event evs[64];
	int n = epoll_wait(l->epfd, evs, 64, timeout_ms), i;

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (i = 0; i < n && !l->stop; i++) {
		struct ev_watch w;

		/* A callback earlier in this batch may have removed it. */
		pthread_mutex_lock(&l->lock);
		w = l->watches[evs[i].data.u32];
		pthread_mutex_unlock(&l->lock);
		if (w.used)
			w.fn(w.arg, evs[i].events);
	}
	return n;
}

int ev_run(struct evloop *l)
{
	while (!l->stop) {
		int rc = ev_run_once(l, -1);

		if (rc < 0)
			return rc;
	}
	return 0;
}

void ev_stop(struct evloop *l) { l->stop = true; }

void ev_close(struct evloop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}
