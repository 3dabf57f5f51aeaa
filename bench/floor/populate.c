/* The kernel floor for preallocation: memfd_create + ftruncate + mmap(MAP_SHARED) + one
 * MADV_POPULATE_WRITE per thread over contiguous shares (QEMU's split), timed from the
 * memfd_create to the last thread's return; munmap + close are not timed (object-add does not
 * wait for them either). Compiled by the benchmarks at run time with gcc; never committed built.
 * Usage: populate BYTES THREADS CYCLES   -> one line per cycle: seconds */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct share { char *addr; size_t len; int rc; };

static void *run(void *p) {
  struct share *s = p;
  s->rc = madvise(s->addr, s->len, MADV_POPULATE_WRITE);
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: populate BYTES THREADS CYCLES\n"); return 2; }
  size_t size = strtoull(argv[1], NULL, 0);
  int threads = atoi(argv[2]), cycles = atoi(argv[3]);
  size_t page = sysconf(_SC_PAGESIZE), pages = size / page;
  if (threads < 1 || threads > 64 || cycles < 1 || pages == 0) return 2;
  for (int c = 0; c < cycles; c++) {
    double t0 = now();
    int fd = memfd_create("floor", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, size) != 0) { perror("memfd"); return 1; }
    char *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) { perror("mmap"); return 1; }
    pthread_t tid[64];
    struct share sh[64];
    size_t first = 0;
    for (int i = 0; i < threads; i++) {
      size_t n = pages / threads + ((size_t)i < pages % threads ? 1 : 0);
      sh[i] = (struct share){ addr + first * page, n * page, 0 };
      first += n;
      pthread_create(&tid[i], NULL, run, &sh[i]);
    }
    for (int i = 0; i < threads; i++) {
      pthread_join(tid[i], NULL);
      if (sh[i].rc != 0) { perror("madvise(MADV_POPULATE_WRITE)"); return 1; }
    }
    printf("%.6f\n", now() - t0);
    fflush(stdout);
    munmap(addr, size);
    close(fd);
  }
  return 0;
}
