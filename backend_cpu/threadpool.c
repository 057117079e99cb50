/* threadpool.c — the process-wide worker pool (see threadpool.h).
 *
 * Protocol. One job at a time is published in `pool` under pool.lock with a new generation number;
 * sleeping workers wake on work_ready, copy the job under the lock and count themselves in `active`,
 * then claim chunks with an atomic counter outside the lock. The submitting thread claims chunks too,
 * then waits until active == 0: every chunk has been claimed by then, so every chunk is finished.
 * A worker that wakes late either still sees the finished job (its claims all fail, it touches nothing
 * of the caller's) or sees the next one. The job fields and next_item are only rewritten while
 * active == 0, so no worker can mix two jobs.
 */
#include "backend_cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* Upper bound on KF_NUM_THREADS; far above any core count we expect, it only stops absurd values. */
#define KF_POOL_MAX_THREADS 1024
/* Chunks per participating thread: more than one so a thread that was descheduled (this machine is
 * shared) does not hold up the others, few enough that claiming stays cheap. */
#define KF_POOL_CHUNKS_PER_THREAD 4

typedef struct kf_pool_job {
  kf_pool_task task;
  void *arg;
  int64_t count;
  int64_t chunk;
} kf_pool_job;

static struct {
  pthread_once_t config_once;
  pthread_once_t start_once;
  int thread_count;       /* participants in a job: workers + the caller */
  int worker_count;       /* workers actually started (<= thread_count - 1) */
  pthread_t workers[KF_POOL_MAX_THREADS];

  pthread_mutex_t submit_lock; /* serializes callers: one job in flight */
  pthread_mutex_t lock;        /* guards everything below except next_item */
  pthread_cond_t work_ready;
  pthread_cond_t all_idle;
  uint64_t generation;
  int active;
  int shutting_down;
  kf_pool_job job;
  atomic_int_fast64_t next_item;
} pool = {
    .config_once = PTHREAD_ONCE_INIT,
    .start_once = PTHREAD_ONCE_INIT,
    .submit_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work_ready = PTHREAD_COND_INITIALIZER,
    .all_idle = PTHREAD_COND_INITIALIZER,
};

/* Set while the thread runs a task (workers always): a nested parallel_for runs inline. */
static _Thread_local int in_pool_task;

static int cpus_available(void) {
  int count = 0;
#if defined(CPU_COUNT)
  cpu_set_t set;
  /* The affinity mask, not the machine's core count: containers and taskset limit us to fewer. */
  if (sched_getaffinity(0, sizeof(set), &set) == 0) count = CPU_COUNT(&set);
#endif
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (count <= 0 || (online > 0 && online < count)) count = (int)online;
  return count > 0 ? count : 1;
}

static void configure(void) {
  int count = cpus_available();
  const char *env = getenv("KF_NUM_THREADS");
  if (env && *env) {
    char *end = NULL;
    long requested = strtol(env, &end, 10);
    if (end && *end == '\0' && requested >= 1) count = requested > KF_POOL_MAX_THREADS ? KF_POOL_MAX_THREADS : (int)requested;
  }
  pool.thread_count = count;
}

int kf_pool_thread_count(void) {
  pthread_once(&pool.config_once, configure);
  return pool.thread_count;
}

static void run_chunks(const kf_pool_job *job) {
  for (;;) {
    int64_t begin = atomic_fetch_add_explicit(&pool.next_item, job->chunk, memory_order_relaxed);
    if (begin >= job->count) return;
    int64_t end = begin + job->chunk < job->count ? begin + job->chunk : job->count;
    job->task(job->arg, begin, end);
  }
}

static void *worker_main(void *unused) {
  (void)unused;
  in_pool_task = 1;
  uint64_t seen = 0;
  pthread_mutex_lock(&pool.lock);
  for (;;) {
    while (pool.generation == seen && !pool.shutting_down) pthread_cond_wait(&pool.work_ready, &pool.lock);
    if (pool.shutting_down) break;
    seen = pool.generation;
    kf_pool_job job = pool.job;
    pool.active++;
    pthread_mutex_unlock(&pool.lock);

    run_chunks(&job);

    pthread_mutex_lock(&pool.lock);
    if (--pool.active == 0) pthread_cond_broadcast(&pool.all_idle);
  }
  pthread_mutex_unlock(&pool.lock);
  return NULL;
}

static void start_workers(void) {
  int wanted = kf_pool_thread_count() - 1;
  for (int i = 0; i < wanted; ++i) {
    /* A worker that cannot be created only costs parallelism; jobs still complete because the
     * caller claims every chunk nobody else does. */
    if (pthread_create(&pool.workers[pool.worker_count], NULL, worker_main, NULL) != 0) break;
    pool.worker_count++;
  }
}

/* Stops the workers when the process exits or libkfuse.so is unloaded, so no thread is left running
 * code that is about to be unmapped. */
__attribute__((destructor)) static void stop_workers(void) {
  if (pool.worker_count == 0) return;
  pthread_mutex_lock(&pool.lock);
  pool.shutting_down = 1;
  pthread_cond_broadcast(&pool.work_ready);
  pthread_mutex_unlock(&pool.lock);
  for (int i = 0; i < pool.worker_count; ++i) pthread_join(pool.workers[i], NULL);
  pool.worker_count = 0;
}

void kf_pool_parallel_for(int64_t count, int64_t min_chunk, kf_pool_task task, void *arg) {
  if (count <= 0) return;
  if (min_chunk < 1) min_chunk = 1;
  int threads = kf_pool_thread_count();
  if (threads == 1 || count <= min_chunk || in_pool_task) {
    int was_in_task = in_pool_task;
    in_pool_task = 1;
    task(arg, 0, count);
    in_pool_task = was_in_task;
    return;
  }
  pthread_once(&pool.start_once, start_workers);
  if (pool.worker_count == 0) {
    in_pool_task = 1;
    task(arg, 0, count);
    in_pool_task = 0;
    return;
  }

  int64_t chunk = (count + (int64_t)threads * KF_POOL_CHUNKS_PER_THREAD - 1) / ((int64_t)threads * KF_POOL_CHUNKS_PER_THREAD);
  if (chunk < min_chunk) chunk = min_chunk;
  kf_pool_job job = {task, arg, count, chunk};

  pthread_mutex_lock(&pool.submit_lock);
  pthread_mutex_lock(&pool.lock);
  /* Late wakers of the previous job may still be counted; the job must not change under them. */
  while (pool.active > 0) pthread_cond_wait(&pool.all_idle, &pool.lock);
  pool.job = job;
  atomic_store_explicit(&pool.next_item, 0, memory_order_relaxed);
  pool.generation++;
  pthread_cond_broadcast(&pool.work_ready);
  pthread_mutex_unlock(&pool.lock);

  in_pool_task = 1;
  run_chunks(&job);
  in_pool_task = 0;

  pthread_mutex_lock(&pool.lock);
  while (pool.active > 0) pthread_cond_wait(&pool.all_idle, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.submit_lock);
}
