/* threadpool_test.c — the worker pool on its own: every item of every job is visited exactly once,
 * for any count and chunk size, with jobs submitted from several threads at once and from inside a
 * running task (nested: runs inline).
 *
 *   threadpool_test <KF_NUM_THREADS>
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend_cpu/threadpool.h"

static int g_passed, g_failed;

static void check(bool ok, const char *what, long long a, long long b) {
  printf("%s %s (%lld, %lld)\n", ok ? "PASS" : "FAIL", what, a, b);
  if (ok) g_passed++;
  else g_failed++;
}

typedef struct visit_job {
  int64_t count;
  atomic_int *visits;
  atomic_int bad_ranges;
  atomic_int nested_visits;
} visit_job;

static void visit(void *arg, int64_t begin, int64_t end) {
  visit_job *job = arg;
  if (begin < 0 || end > job->count || begin >= end) atomic_fetch_add(&job->bad_ranges, 1);
  for (int64_t i = begin; i < end && i >= 0 && i < job->count; ++i) atomic_fetch_add(&job->visits[i], 1);
}

static bool run_and_verify(int64_t count, int64_t min_chunk) {
  visit_job job = {.count = count};
  job.visits = calloc((size_t)(count > 0 ? count : 1), sizeof(atomic_int));
  kf_pool_parallel_for(count, min_chunk, visit, &job);
  bool ok = atomic_load(&job.bad_ranges) == 0;
  for (int64_t i = 0; i < count && ok; ++i) ok = atomic_load(&job.visits[i]) == 1;
  free(job.visits);
  return ok;
}

/* A task that itself calls parallel_for: must complete (inline), not deadlock. */
static void nested_inner(void *arg, int64_t begin, int64_t end) {
  visit_job *job = arg;
  atomic_fetch_add(&job->nested_visits, (int)(end - begin));
}

static void nested_outer(void *arg, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) kf_pool_parallel_for(10, 1, nested_inner, arg);
}

static void *submitter(void *arg) {
  int *ok = arg;
  *ok = 1;
  for (int round = 0; round < 200; ++round)
    if (!run_and_verify(1000 + round, 1 + round % 7)) *ok = 0;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) setenv("KF_NUM_THREADS", argv[1], 1);
  int threads = kf_pool_thread_count();
  check(threads >= 1 && (argc < 2 || threads == atoi(argv[1])), "thread count follows KF_NUM_THREADS", threads,
        argc > 1 ? atoi(argv[1]) : -1);

  static const int64_t counts[] = {0, 1, 2, 3, 7, 64, 1000, 4097, 100003};
  static const int64_t chunks[] = {1, 3, 64, 100000};
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; ++c)
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; ++k)
      check(run_and_verify(counts[c], chunks[k]), "every item visited once (count, min_chunk)", counts[c], chunks[k]);

  visit_job nested = {.count = 0};
  kf_pool_parallel_for(32, 1, nested_outer, &nested);
  check(atomic_load(&nested.nested_visits) == 320, "nested parallel_for runs inline", atomic_load(&nested.nested_visits),
        320);

  enum { SUBMITTERS = 4 };
  pthread_t ids[SUBMITTERS];
  int oks[SUBMITTERS];
  for (int i = 0; i < SUBMITTERS; ++i) pthread_create(&ids[i], NULL, submitter, &oks[i]);
  int all_ok = 1;
  for (int i = 0; i < SUBMITTERS; ++i) {
    pthread_join(ids[i], NULL);
    all_ok &= oks[i];
  }
  check(all_ok, "4 threads submitting 200 jobs each concurrently", SUBMITTERS, 200);

  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed > 0 ? 1 : 0;
}
