/* conv's fork-join thread pool: run tasks [0, ntask) on up to `threads` threads.
 *
 * Why not an OpenMP parallel loop: at the end of an OpenMP region the caller waits at a
 * barrier for every thread of the team, including one the OS has not scheduled yet. On a
 * busy machine that wait is a scheduler slice (measured here, seed shape, 2 threads, one
 * core busy elsewhere: median 0.83 ms, p99 16 ms, a third of the calls over 3x the
 * median). Here the caller never waits for a worker that has not started: it takes chunks
 * of tasks itself, closes the job when every chunk is taken, and then waits only for
 * chunks a worker has already taken. A worker that wakes late finds the job closed and
 * goes back to sleep. Which thread runs a task never changes a result.
 *
 * Workers are started on first use, at most one fewer than the CPUs online; they block
 * every signal, spin briefly after a job (back-to-back calls find them awake), yielding,
 * then sleep on a condition variable. One job at a time: a call made while another
 * thread's job is open runs chunks on its own thread and tries again after each one. A
 * forked child starts with no workers and makes its own on first use (fork is safe).
 *
 * POSIX threads where available; elsewhere an OpenMP loop when the build has OpenMP;
 * otherwise, and in the serial build (CONV_SERIAL), every task runs on the caller.
 */
#ifndef CONV_POOL_H
#define CONV_POOL_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef void (*conv_task_fn)(const void *ctx, ptrdiff_t begin, ptrdiff_t end);

#define CONV_POOL_MAX_WORKERS 255

#include <time.h>
static long long conv_pool_now_ns(void) {  /* a monotonic clock where there is one */
    struct timespec ts;
#if defined(CLOCK_MONOTONIC)
    clock_gettime(CLOCK_MONOTONIC, &ts);
#else
    timespec_get(&ts, TIME_UTC);
#endif
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#if defined(__GNUC__) || defined(__clang__)
#define CONV_LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define CONV_STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#else
#define CONV_LOAD_RELAXED(p) (*(volatile int *)(p))
#define CONV_STORE_RELAXED(p, v) (*(volatile int *)(p) = (v))
#endif

/* Interrupting a call (Ctrl-C). Task bodies call conv_interrupted() between tasks: once
 * `stop` is set every thread stops taking tasks, and the calling thread polls `poll`
 * (which asks Python whether a signal handler raised) at most every CONV_POLL_NS. */
#define CONV_POLL_NS 20000000LL
typedef struct {
    int stop;                     /* read and written with CONV_LOAD/STORE_RELAXED */
    int (*poll)(void *);          /* nonzero: stop; called on the calling thread only */
    void *poll_ctx;
    long long next_poll_ns;
    const void *caller;           /* the calling thread's marker (conv_pool_self) */
} conv_interrupt;

#if !defined(CONV_SERIAL) && (defined(__unix__) || defined(__APPLE__))
#define CONV_POOL_PTHREADS 1
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define CONV_POOL_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CONV_POOL_RELAX() __asm__ __volatile__("yield")
#else
#define CONV_POOL_RELAX() ((void)0)
#endif
#include <sched.h>
/* how long a worker waits, awake, for the next job before it sleeps (back-to-back calls
 * find it awake), and how long a caller spins for workers' last chunks before it sleeps.
 * Spinning threads yield every 64 turns: on a busy machine a spinning worker must not
 * keep the caller (or anyone else) off a core. */
#define CONV_POOL_SPIN_NS 500000L


/* One turn of a spin loop; every 64th turn yields and tells whether `until` has passed. */
static int conv_pool_spin_over(int *turn, long long until) {
    if ((++*turn & 63) != 0) {
        CONV_POOL_RELAX();
        return 0;
    }
    sched_yield();
    return conv_pool_now_ns() >= until;
}


typedef struct {
    conv_task_fn fn;
    const void *ctx;
    ptrdiff_t ntask, chunk;
    atomic_ptrdiff_t next;   /* first task not yet taken */
    atomic_int seats;        /* workers that may still join */
    atomic_int active;       /* workers that joined and have not left */
} conv_job;

/* The hot path takes no lock: a caller publishes its job with one atomic store, workers
 * join it with atomics, and the mutex and condition variables are only for sleeping. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;     /* a job was opened (for sleeping workers) */
    pthread_cond_t done;     /* a worker left a job last (for a sleeping caller) */
    _Atomic(conv_job *) job; /* the open job, or NULL */
    atomic_ulong gen;        /* bumped for every job opened */
    atomic_int peeking;      /* workers between reading `job` and joining or not */
    atomic_int sleepers;     /* workers asleep (or about to be) on `wake` */
    atomic_int workers;      /* workers started in this process (grown under mu) */
    int cap;                 /* most workers this process may start; 0: not decided yet,
                                -1: none (under mu) */
} conv_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
               NULL, 0, 0, 0, 0, 0};

static void conv_pool_take(conv_job *j) {
    for (;;) {
        ptrdiff_t b = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (b >= j->ntask) return;
        j->fn(j->ctx, b, b + j->chunk < j->ntask ? b + j->chunk : j->ntask);
    }
}

/* Join the open job if it has a seat: take chunks until none is left. */
static void conv_pool_join(void) {
    conv_job *j;
    int joined = 0;
    atomic_fetch_add(&conv_pool.peeking, 1);   /* before reading job: see conv_pool_run */
    j = atomic_load(&conv_pool.job);
    if (j != NULL) {
        int s = atomic_load(&j->seats);
        while (s > 0 && !atomic_compare_exchange_weak(&j->seats, &s, s - 1)) {}
        if (s > 0) {
            atomic_fetch_add(&j->active, 1);
            joined = 1;
        }
    }
    atomic_fetch_sub(&conv_pool.peeking, 1);
    if (!joined) return;
    conv_pool_take(j);
    if (atomic_fetch_sub(&j->active, 1) == 1) {  /* the last access to *j */
        pthread_mutex_lock(&conv_pool.mu);        /* a caller may be asleep on `done` */
        pthread_cond_broadcast(&conv_pool.done);
        pthread_mutex_unlock(&conv_pool.mu);
    }
}

static void *conv_pool_worker(void *arg) {
    unsigned long seen = (unsigned long)(size_t)arg;
    for (;;) {
        long long until = conv_pool_now_ns() + CONV_POOL_SPIN_NS;
        int k = 0;
        while (atomic_load_explicit(&conv_pool.gen, memory_order_relaxed) == seen) {
            if (conv_pool_spin_over(&k, until)) {  /* spun long enough: sleep */
                pthread_mutex_lock(&conv_pool.mu);
                atomic_fetch_add(&conv_pool.sleepers, 1);
                while (atomic_load(&conv_pool.gen) == seen)
                    pthread_cond_wait(&conv_pool.wake, &conv_pool.mu);
                atomic_fetch_sub(&conv_pool.sleepers, 1);
                pthread_mutex_unlock(&conv_pool.mu);
                break;
            }
        }
        seen = atomic_load(&conv_pool.gen);
        conv_pool_join();
    }
    return NULL;
}

/* fork: no thread may hold the lock while the process is copied; the child has none of
 * the workers, so it starts from an empty pool and makes its own on first use */
static void conv_pool_before_fork(void) { pthread_mutex_lock(&conv_pool.mu); }
static void conv_pool_after_fork_parent(void) { pthread_mutex_unlock(&conv_pool.mu); }
static void conv_pool_after_fork_child(void) {
    pthread_mutex_unlock(&conv_pool.mu);
    pthread_cond_init(&conv_pool.wake, NULL);
    pthread_cond_init(&conv_pool.done, NULL);
    atomic_store(&conv_pool.job, NULL);
    atomic_store(&conv_pool.peeking, 0);
    atomic_store(&conv_pool.sleepers, 0);
    atomic_store(&conv_pool.workers, 0);
    conv_pool.cap = 0;
}

/* Start workers until `n` exist, at most one fewer than the CPUs online (the caller is
 * the last); returns how many exist. */
static int conv_pool_grow(int n) {
    static int fork_handler = 0;
    int have = atomic_load_explicit(&conv_pool.workers, memory_order_acquire);
    if (have >= n) return have;
    pthread_mutex_lock(&conv_pool.mu);
    if (conv_pool.cap == 0) {  /* first use in this process */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        conv_pool.cap = cpus > 1 ? (cpus - 1 < CONV_POOL_MAX_WORKERS
                                    ? (int)cpus - 1 : CONV_POOL_MAX_WORKERS) : 1;
        if (!fork_handler && pthread_atfork(conv_pool_before_fork,
                                            conv_pool_after_fork_parent,
                                            conv_pool_after_fork_child) == 0)
            fork_handler = 1;
        if (!fork_handler) conv_pool.cap = -1;  /* not fork-safe: no workers at all */
    }
    if (n > conv_pool.cap) n = conv_pool.cap;
    while (atomic_load(&conv_pool.workers) < n) {
        pthread_t t;
        pthread_attr_t attr;
        sigset_t all, old;
        int rc;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        sigfillset(&all);  /* workers take no signals: they stay with Python's threads */
        pthread_sigmask(SIG_BLOCK, &all, &old);
        rc = pthread_create(&t, &attr, conv_pool_worker,
                            (void *)(size_t)atomic_load(&conv_pool.gen));
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) {  /* out of threads: keep those there are, stop trying */
            conv_pool.cap = atomic_load(&conv_pool.workers);
            if (conv_pool.cap == 0) conv_pool.cap = -1;
            break;
        }
        atomic_fetch_add(&conv_pool.workers, 1);
    }
    have = atomic_load(&conv_pool.workers);
    pthread_mutex_unlock(&conv_pool.mu);
    return have;
}

/* Open a job over tasks [first, ntask) with `helpers` seats; 0 when another thread's job
 * is open. Runs it (the caller works too) and waits for the workers that joined. */
static int conv_pool_try_job(int helpers, ptrdiff_t first, ptrdiff_t ntask,
                             ptrdiff_t chunk, conv_task_fn fn, const void *ctx) {
    conv_job job;
    conv_job *none = NULL;
    int k = 0, w;
    long long until;
    job.fn = fn;
    job.ctx = ctx;
    job.ntask = ntask;
    job.chunk = chunk;
    atomic_init(&job.next, first);
    atomic_init(&job.active, 0);
    atomic_init(&job.seats, helpers);
    if (!atomic_compare_exchange_strong(&conv_pool.job, &none, &job))
        return 0;
    atomic_fetch_add(&conv_pool.gen, 1);
    w = atomic_load(&conv_pool.sleepers);
    if (w > 0) {  /* wake as many sleepers as there are seats; spinning ones see `gen` */
        pthread_mutex_lock(&conv_pool.mu);
        for (w = w < helpers ? w : helpers; w > 0; w--)
            pthread_cond_signal(&conv_pool.wake);
        pthread_mutex_unlock(&conv_pool.mu);
    }

    conv_pool_take(&job);                  /* the caller works too, until nothing is left */

    /* Close the job, then wait only for workers that joined it. A worker increments
     * `peeking` before it reads `job` (all sequentially consistent): once `job` is NULL
     * and `peeking` has been 0, no worker can still join, so `active` only falls. */
    atomic_store(&conv_pool.job, NULL);
    while (atomic_load(&conv_pool.peeking) > 0)
        conv_pool_spin_over(&k, 0);
    until = conv_pool_now_ns() + CONV_POOL_SPIN_NS;
    while (atomic_load(&job.active) > 0 && !conv_pool_spin_over(&k, until)) {}
    if (atomic_load(&job.active) > 0) {
        pthread_mutex_lock(&conv_pool.mu);
        while (atomic_load(&job.active) > 0)
            pthread_cond_wait(&conv_pool.done, &conv_pool.mu);
        pthread_mutex_unlock(&conv_pool.mu);
    }
    return 1;
}

static void conv_pool_run(int threads, ptrdiff_t ntask, ptrdiff_t chunk, conv_task_fn fn,
                          const void *ctx) {
    ptrdiff_t first = 0;
    int helpers;
    if (ntask <= 0) return;
    if (chunk < 1) chunk = 1;
    helpers = threads - 1;
    if ((ptrdiff_t)helpers > (ntask + chunk - 1) / chunk - 1)
        helpers = (int)((ntask + chunk - 1) / chunk - 1);
    if (helpers > 0) {
        int have = conv_pool_grow(helpers);
        if (have < helpers) helpers = have;
    }
    if (helpers < 1) { fn(ctx, 0, ntask); return; }
    /* While another thread's job is open, run chunks here and try again after each, so
     * a long call that met a short one gets the workers as soon as they are free. */
    while (first < ntask) {
        if (conv_pool_try_job(helpers, first, ntask, chunk, fn, ctx)) return;
        fn(ctx, first, first + chunk < ntask ? first + chunk : ntask);
        first += chunk;
    }
}

/* For the tests: run `n` tasks that each wait (up to `timeout_ns`) until all n have
 * started, and return how many distinct threads ran them. n threads means the pool's
 * workers really took tasks; 1 means the caller ran them all alone. */
typedef struct {
    atomic_int started;
    int n;
    long long timeout_ns;
    pthread_t who[64];
} conv_pool_probe_ctx;

static void conv_pool_probe_task(const void *vctx, ptrdiff_t begin, ptrdiff_t end) {
    conv_pool_probe_ctx *c = (conv_pool_probe_ctx *)vctx;
    ptrdiff_t t;
    for (t = begin; t < end; t++) {
        long long until = conv_pool_now_ns() + c->timeout_ns;
        int k = 0;
        c->who[t] = pthread_self();
        atomic_fetch_add(&c->started, 1);
        while (atomic_load(&c->started) < c->n && !conv_pool_spin_over(&k, until)) {}
    }
}

static int conv_pool_probe(int n, double timeout_s) {
    conv_pool_probe_ctx c;
    int i, j, distinct = 0;
    if (n < 1) n = 1;
    if (n > 64) n = 64;
    atomic_init(&c.started, 0);
    c.n = n;
    c.timeout_ns = (long long)(timeout_s * 1e9);
    conv_pool_run(n, n, 1, conv_pool_probe_task, &c);
    for (i = 0; i < n; i++) {
        for (j = 0; j < i && !pthread_equal(c.who[i], c.who[j]); j++) {}
        distinct += (j == i);
    }
    return distinct;
}

static const void *conv_pool_self(void) {  /* a per-thread address: this thread's marker */
    static _Thread_local char mark;
    return &mark;
}

#define CONV_POOL_KIND "pthreads"

#elif !defined(CONV_SERIAL) && defined(_OPENMP)
#include <omp.h>

static void conv_pool_run(int threads, ptrdiff_t ntask, ptrdiff_t chunk, conv_task_fn fn,
                          const void *ctx) {
    ptrdiff_t nchunk, c;
    if (ntask <= 0) return;
    if (chunk < 1) chunk = 1;
    nchunk = (ntask + chunk - 1) / chunk;
    #pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (c = 0; c < nchunk; c++)
        fn(ctx, c * chunk, (c + 1) * chunk < ntask ? (c + 1) * chunk : ntask);
}

static int conv_pool_probe(int n, double timeout_s) {  /* threads of an OpenMP team */
    int seen = 1;
    (void)timeout_s;
    #pragma omp parallel num_threads(n)
    {
        #pragma omp single
        seen = omp_get_num_threads();
    }
    return seen;
}

static const void *conv_pool_self(void) {  /* thread 0 of a team is the caller */
    static char caller_mark, worker_mark;
    return omp_get_thread_num() == 0 ? (const void *)&caller_mark : (const void *)&worker_mark;
}

#define CONV_POOL_KIND "openmp"

#else

static void conv_pool_run(int threads, ptrdiff_t ntask, ptrdiff_t chunk, conv_task_fn fn,
                          const void *ctx) {
    (void)threads; (void)chunk;
    if (ntask > 0) fn(ctx, 0, ntask);
}

static int conv_pool_probe(int n, double timeout_s) { (void)n; (void)timeout_s; return 1; }

static const void *conv_pool_self(void) { static char mark; return &mark; }

#define CONV_POOL_KIND "serial"
#endif

/* Between tasks: 1 when the call is being interrupted (then return at once). Cheap: one
 * relaxed load, plus a clock read every 16th call on the calling thread. */
static int conv_interrupted(conv_interrupt *in, ptrdiff_t task) {
    long long now;
    if (in == NULL) return 0;
    if (CONV_LOAD_RELAXED(&in->stop)) return 1;
    if ((task & 15) != 0 || in->poll == NULL || conv_pool_self() != in->caller) return 0;
    now = conv_pool_now_ns();
    if (now < in->next_poll_ns) return 0;
    in->next_poll_ns = now + CONV_POLL_NS;
    if (in->poll(in->poll_ctx)) {
        CONV_STORE_RELAXED(&in->stop, 1);
        return 1;
    }
    return 0;
}

/* Each thread's scratch (winograd's transformed tiles and products, the NCHW 1x1
 * driver's input panel), kept from call to call and grown when a task needs more: the
 * pages stay mapped, so a call does not pay page faults on fresh memory for every task.
 * It starts on a cache line. One task at a time uses it; NULL if there is no memory. */
#if defined(_MSC_VER)
#define CONV_THREAD_LOCAL __declspec(thread)
#else
#define CONV_THREAD_LOCAL __thread
#endif
static CONV_THREAD_LOCAL void *conv_scratch_mem;
static CONV_THREAD_LOCAL size_t conv_scratch_bytes;

static void *conv_scratch(size_t bytes) {
    if (bytes > conv_scratch_bytes) {
        free(conv_scratch_mem);
        conv_scratch_mem = malloc(bytes + 64);
        conv_scratch_bytes = conv_scratch_mem != NULL ? bytes : 0;
    }
    if (conv_scratch_mem == NULL)
        return NULL;
    return (void *)(((uintptr_t)conv_scratch_mem + 63) & ~(uintptr_t)63);
}

#endif /* CONV_POOL_H */
