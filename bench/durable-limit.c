/*
 * Scenario 0 of the benchmark: the physical limit of durable Maildir delivery on this disk, with no protocol
 * and no runtime at all. Each of WRITERS processes creates COUNT/WRITERS files in DIR/tmp (exclusive create),
 * writes SIZE bytes, fsyncs the file, renames it into DIR/new and fsyncs DIR/new: exactly the syscalls a
 * durable LMTP delivery needs before it may answer 250. Prints one JSON line: {"files":N,"ms":T}.
 *
 * Usage: durable-limit DIR WRITERS COUNT SIZE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, const char *path) {
  fprintf(stderr, "durable-limit: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static int writer(const char *dir, int id, int count, const char *buf, size_t size) {
  char tmp[4096], dst[4096], newdir[4096];
  snprintf(newdir, sizeof newdir, "%s/new", dir);
  for (int i = 0; i < count; i++) {
    snprintf(tmp, sizeof tmp, "%s/tmp/w%d-%d", dir, id, i);
    snprintf(dst, sizeof dst, "%s/new/w%d-%d", dir, id, i);
    int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0600);
    if (fd < 0) die("open", tmp);
    size_t done = 0;
    while (done < size) {
      ssize_t n = write(fd, buf + done, size - done);
      if (n < 0) die("write", tmp);
      done += (size_t)n;
    }
    if (fsync(fd) < 0) die("fsync", tmp);
    if (close(fd) < 0) die("close", tmp);
    if (rename(tmp, dst) < 0) die("rename", tmp);
    int dfd = open(newdir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) die("open", newdir);
    if (fsync(dfd) < 0) die("fsync", newdir);
    close(dfd);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: durable-limit DIR WRITERS COUNT SIZE\n");
    return 2;
  }
  const char *dir = argv[1];
  int writers = atoi(argv[2]);
  int count = atoi(argv[3]);
  size_t size = (size_t)atol(argv[4]);
  if (writers < 1 || count < 1) return 2;
  char sub[4096];
  const char *subs[] = {"tmp", "new", "cur"};
  mkdir(dir, 0700);
  for (int i = 0; i < 3; i++) {
    snprintf(sub, sizeof sub, "%s/%s", dir, subs[i]);
    if (mkdir(sub, 0700) < 0 && errno != EEXIST) die("mkdir", sub);
  }
  char *buf = malloc(size > 0 ? size : 1);
  for (size_t i = 0; i < size; i++) buf[i] = (i % 78 == 77) ? '\n' : (char)('a' + i % 26);

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int w = 0; w < writers; w++) {
    int share = count / writers + (w < count % writers ? 1 : 0);
    pid_t pid = fork();
    if (pid < 0) die("fork", dir);
    if (pid == 0) _exit(writer(dir, w, share, buf, size));
  }
  int failed = 0, status;
  while (wait(&status) > 0) {
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (failed) return 1;
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  printf("{\"files\":%d,\"ms\":%.3f}\n", count, ms);
  return 0;
}
