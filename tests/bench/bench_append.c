/*
 * bench_append.c -- what one journal-sized append costs on this machine's
 * file system, three ways: write(2) to an O_APPEND file (what the journal
 * does today), pwrite(2) into space fallocate(2)d ahead, and memcpy into
 * a MAP_SHARED mapping of space fallocate(2)d ahead (an mmap'd journal).
 * Also one bare syscall, the floor of the first two.  A benchmark, not a
 * test: plain key=value lines, exit 0 unless setup fails.
 *
 * Usage: bench_append [DIR [N]]   (DIR: default TMPDIR or /tmp; N records
 * of 200 bytes per way, default 200000).  The files are removed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define REC 200
#define CHUNK (1 << 20)

static double cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int open_new(const char *dir, const char *name, int flags)
{
    char path[4096];
    int fd;
    snprintf(path, sizeof path, "%s/bench_append.%s", dir, name);
    fd = open(path, O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0600);
    if (fd < 0)
        die(path);
    if (unlink(path) != 0) /* gone when closed */
        die(path);
    return fd;
}

/* Keep [0, at + REC) allocated, a chunk at a time. */
static void reserve(int fd, off_t at, off_t *alloc)
{
    if (at + REC <= *alloc)
        return;
    if (fallocate(fd, 0, *alloc, CHUNK) != 0)
        die("fallocate");
    *alloc += CHUNK;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR");
    long n = argc > 2 ? atol(argv[2]) : 200000;
    char rec[REC];
    off_t at, alloc;
    double c0;
    char *map;
    size_t maplen;
    int fd;

    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
    if (n <= 0)
        die("usage: bench_append [DIR [N > 0]]");
    memset(rec, 'x', sizeof rec);
    printf("dir=%s\nrecords=%ld\nrecord_bytes=%d\n", dir, n, REC);

    fd = open_new(dir, "append", O_WRONLY | O_APPEND);
    c0 = cpu_ns();
    for (long i = 0; i < n; i++)
        if (write(fd, rec, REC) != REC)
            die("write");
    printf("append_write_ns=%.0f\n", (cpu_ns() - c0) / (double)n);
    close(fd);

    fd = open_new(dir, "pwrite", O_RDWR);
    at = alloc = 0;
    c0 = cpu_ns();
    for (long i = 0; i < n; i++, at += REC) {
        reserve(fd, at, &alloc);
        if (pwrite(fd, rec, REC, at) != REC)
            die("pwrite");
    }
    printf("prealloc_pwrite_ns=%.0f\n", (cpu_ns() - c0) / (double)n);
    close(fd);

    fd = open_new(dir, "mmap", O_RDWR);
    maplen = (size_t)n * REC + CHUNK;
    map = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        die("mmap");
    at = alloc = 0;
    c0 = cpu_ns();
    for (long i = 0; i < n; i++, at += REC) {
        reserve(fd, at, &alloc);
        memcpy(map + at, rec, REC);
    }
    printf("prealloc_mmap_ns=%.0f\n", (cpu_ns() - c0) / (double)n);
    munmap(map, maplen);
    close(fd);

    c0 = cpu_ns();
    for (long i = 0; i < n; i++)
        (void)syscall(SYS_getppid);
    printf("bare_syscall_ns=%.0f\n", (cpu_ns() - c0) / (double)n);
    return 0;
}
