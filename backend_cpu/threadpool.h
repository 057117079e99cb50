/* threadpool.h — the library-wide pool of worker threads that CPU kernels (RMSNorm now; GEMM and
 * attention later) split their work over.
 *
 * One pool per process, created on first use, sized to the CPUs this process may run on (or
 * KF_NUM_THREADS). kf_pool_parallel_for hands out [0, count) in chunks to the workers and to the
 * calling thread, which works too, and returns when every chunk is done. It is safe to call from any
 * number of threads: jobs from different callers run one after another. A call made from inside a
 * running task (nested parallelism) runs inline on the calling thread instead of deadlocking.
 */
#ifndef KF_BACKEND_CPU_THREADPOOL_H_
#define KF_BACKEND_CPU_THREADPOOL_H_

#include <stdint.h>

/* Processes items [begin, end). Called concurrently from several threads with disjoint ranges. */
typedef void (*kf_pool_task)(void *arg, int64_t begin, int64_t end);

/* Number of threads that share a job (workers + the caller); >= 1. Does not start the workers. */
int kf_pool_thread_count(void);

/* Runs task over [0, count) split into chunks of at least min_chunk items and returns when all are
 * done. count <= min_chunk, a pool of one thread, or a nested call run the whole range inline. */
void kf_pool_parallel_for(int64_t count, int64_t min_chunk, kf_pool_task task, void *arg);

#endif /* KF_BACKEND_CPU_THREADPOOL_H_ */
