/* The power-cut harness's write log: an LD_PRELOAD shim, compiled at test time (devkit/powercut/build.py).
 *
 * Every call that changes what a file in $POWERCUT_DIR holds, or which names that directory holds, is
 * appended to $POWERCUT_LOG as one record (format: devkit/powercut/log.py), *after* the real call
 * succeeded. The log is written with plain write() on an O_APPEND descriptor, one write() per record,
 * so it survives kill -9 of the process (the page cache is kept). Only the directory itself and files
 * directly in it are logged; nothing is changed about what the calls do.
 *
 * powercut_mark(text) appends a MARK record: the workload calls it (through ctypes) after an `add`
 * returned, so the replayer knows which ratings were acknowledged before any point of the log.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_OPEN = 1, OP_WRITE = 2, OP_TRUNC = 3, OP_SYNC = 4, OP_DIRSYNC = 5, OP_RENAME = 6, OP_UNLINK = 7,
       OP_MARK = 8 };
#define MAGIC 0xA5
#define MAX_FD 65536
#define KIND_NONE 0
#define KIND_FILE 1
#define KIND_DIR 2

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static int ready = 0;
static char dir[PATH_MAX];
static size_t dir_len = 0;
static unsigned char kind[MAX_FD];
static uint64_t ino_of[MAX_FD];

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_ftruncate)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_close)(int);

static void init(void) {
    if (ready) return;
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite64");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev64");
    real_open = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat64");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_rename = dlsym(RTLD_NEXT, "rename");
    real_renameat = dlsym(RTLD_NEXT, "renameat");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
    real_close = dlsym(RTLD_NEXT, "close");
    const char *d = getenv("POWERCUT_DIR"), *l = getenv("POWERCUT_LOG");
    if (d && l && strlen(d) < sizeof dir) {
        strcpy(dir, d);
        dir_len = strlen(dir);
        while (dir_len > 1 && dir[dir_len - 1] == '/') dir[--dir_len] = 0;
        log_fd = real_open(l, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < 0) {
            fprintf(stderr, "powercut shim: cannot open POWERCUT_LOG %s: %s\n", l, strerror(errno));
            abort();
        }
    }
    ready = 1;
}

__attribute__((constructor)) static void on_load(void) { init(); }

static void put_all(const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = real_write(log_fd, buf, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "powercut shim: writing the log failed: %s\n", strerror(errno));
            abort();
        }
        buf += w;
        n -= (size_t)w;
    }
}

/* One record, one write(): magic u8, op u8, ino u64, off i64, len u64, path length u32, path, data. */
static void emit(int op, uint64_t ino, int64_t off, uint64_t len, const char *path, size_t plen,
                 const void *data, size_t dlen) {
    size_t n = 30 + plen + dlen;
    char stackbuf[8192];
    char *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!buf) abort();
    uint32_t pl = (uint32_t)plen;
    buf[0] = (char)MAGIC;
    buf[1] = (char)op;
    memcpy(buf + 2, &ino, 8);
    memcpy(buf + 10, &off, 8);
    memcpy(buf + 18, &len, 8);
    memcpy(buf + 26, &pl, 4);
    if (plen) memcpy(buf + 30, path, plen);
    if (dlen) memcpy(buf + 30 + plen, data, dlen);
    put_all(buf, n);
    if (buf != stackbuf) free(buf);
}

/* The name inside the watched directory, or NULL if `path` (relative to `dirfd`) is not directly in it. */
static const char *watched(int dirfd, const char *path, char *abs) {
    if (log_fd < 0 || !path) return NULL;
    if (path[0] == '/') {
        if (strlen(path) >= PATH_MAX) return NULL;
        strcpy(abs, path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return NULL;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t k = readlink(link, base, sizeof base - 1);
            if (k < 0) return NULL;
            base[k] = 0;
        }
        if (snprintf(abs, PATH_MAX, "%s/%s", base, path) >= PATH_MAX) return NULL;
    }
    size_t n = strlen(abs);
    while (n > 1 && abs[n - 1] == '/') abs[--n] = 0;
    if (n == dir_len && memcmp(abs, dir, dir_len) == 0) return abs + n;  /* the directory itself: "" */
    if (n > dir_len + 1 && memcmp(abs, dir, dir_len) == 0 && abs[dir_len] == '/' &&
        !strchr(abs + dir_len + 1, '/'))
        return abs + dir_len + 1;
    return NULL;
}

static void opened(int fd, const char *name, int flags) {
    if (fd < 0 || fd >= MAX_FD || !name) return;
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    pthread_mutex_lock(&mu);
    if (S_ISDIR(st.st_mode)) {
        kind[fd] = name[0] ? KIND_NONE : KIND_DIR;
    } else if (S_ISREG(st.st_mode) && name[0]) {
        kind[fd] = KIND_FILE;
        ino_of[fd] = (uint64_t)st.st_ino;
        emit(OP_OPEN, ino_of[fd], flags, 0, name, strlen(name), NULL, 0);
        if (flags & O_TRUNC) emit(OP_TRUNC, ino_of[fd], 0, 0, NULL, 0, NULL, 0);
    }
    pthread_mutex_unlock(&mu);
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode) {
    init();
    int fd = dirfd == AT_FDCWD ? real_open(path, flags, mode) : real_openat(dirfd, path, flags, mode);
    if (fd >= 0 && fd < MAX_FD) {
        char abs[PATH_MAX];
        kind[fd] = KIND_NONE;
        const char *name = watched(dirfd, path, abs);
        if (name) opened(fd, name, flags);
    }
    return fd;
}

/* The mode argument is there only with O_CREAT or O_TMPFILE. */
#define MODE_ARG(flags, m) \
    mode_t m = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); m = va_arg(ap, mode_t); va_end(ap); }

int open(const char *path, int flags, ...) { MODE_ARG(flags, m) return open_common(AT_FDCWD, path, flags, m); }
int open64(const char *path, int flags, ...) { MODE_ARG(flags, m) return open_common(AT_FDCWD, path, flags, m); }
int openat(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags, m) return open_common(dirfd, path, flags, m);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags, m) return open_common(dirfd, path, flags, m);
}

static int tracked(int fd) { return log_fd >= 0 && fd >= 0 && fd < MAX_FD && kind[fd] == KIND_FILE; }

static void logged_write(int fd, int64_t off, const void *buf, ssize_t n) {
    if (n <= 0) return;
    pthread_mutex_lock(&mu);
    emit(OP_WRITE, ino_of[fd], off, (uint64_t)n, NULL, 0, buf, (size_t)n);
    pthread_mutex_unlock(&mu);
}

ssize_t write(int fd, const void *buf, size_t n) {
    init();
    if (!tracked(fd)) return real_write(fd, buf, n);
    int append = fcntl(fd, F_GETFL) & O_APPEND;
    off_t at = append ? lseek(fd, 0, SEEK_END) : lseek(fd, 0, SEEK_CUR);
    ssize_t r = real_write(fd, buf, n);
    logged_write(fd, at, buf, r);
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    init();
    ssize_t r = real_pwrite(fd, buf, n, off);
    if (tracked(fd)) logged_write(fd, off, buf, r);
    return r;
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    init();
    ssize_t r = real_pwritev(fd, iov, cnt, off);
    if (tracked(fd) && r > 0) {
        ssize_t left = r;
        int64_t at = off;
        for (int i = 0; i < cnt && left > 0; i++) {
            ssize_t k = (ssize_t)iov[i].iov_len < left ? (ssize_t)iov[i].iov_len : left;
            logged_write(fd, at, iov[i].iov_base, k);
            at += k;
            left -= k;
        }
    }
    return r;
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) { return pwritev(fd, iov, cnt, off); }

int ftruncate(int fd, off_t size) {
    init();
    int r = real_ftruncate(fd, size);
    if (r == 0 && tracked(fd)) {
        pthread_mutex_lock(&mu);
        emit(OP_TRUNC, ino_of[fd], 0, (uint64_t)size, NULL, 0, NULL, 0);
        pthread_mutex_unlock(&mu);
    }
    return r;
}
int ftruncate64(int fd, off_t size) { return ftruncate(fd, size); }

static void synced(int fd) {
    if (log_fd < 0 || fd < 0 || fd >= MAX_FD) return;
    pthread_mutex_lock(&mu);
    if (kind[fd] == KIND_FILE) emit(OP_SYNC, ino_of[fd], 0, 0, NULL, 0, NULL, 0);
    else if (kind[fd] == KIND_DIR) emit(OP_DIRSYNC, 0, 0, 0, NULL, 0, NULL, 0);
    pthread_mutex_unlock(&mu);
}

int fsync(int fd) { init(); int r = real_fsync(fd); if (r == 0) synced(fd); return r; }
int fdatasync(int fd) { init(); int r = real_fdatasync(fd); if (r == 0) synced(fd); return r; }

static int renamed(int r, int ofd, const char *old, int nfd, const char *new) {
    if (r != 0 || log_fd < 0) return r;
    char a[PATH_MAX], b[PATH_MAX];
    const char *on = watched(ofd, old, a), *nn = watched(nfd, new, b);
    if (!on && !nn) return r;
    if (!on || !nn || !on[0] || !nn[0]) {
        fprintf(stderr, "powercut shim: rename across the watched directory is not modelled: %s -> %s\n", old, new);
        abort();
    }
    char both[2 * NAME_MAX + 2];
    size_t lo = strlen(on), ln = strlen(nn);
    memcpy(both, on, lo);
    both[lo] = 0;
    memcpy(both + lo + 1, nn, ln);
    pthread_mutex_lock(&mu);
    emit(OP_RENAME, 0, 0, 0, both, lo + 1 + ln, NULL, 0);
    pthread_mutex_unlock(&mu);
    return r;
}

int rename(const char *old, const char *new) {
    init();
    return renamed(real_rename(old, new), AT_FDCWD, old, AT_FDCWD, new);
}
int renameat(int ofd, const char *old, int nfd, const char *new) {
    init();
    return renamed(real_renameat(ofd, old, nfd, new), ofd, old, nfd, new);
}

static int unlinked(int r, int dirfd, const char *path) {
    if (r != 0 || log_fd < 0) return r;
    char a[PATH_MAX];
    const char *name = watched(dirfd, path, a);
    if (name && name[0]) {
        pthread_mutex_lock(&mu);
        emit(OP_UNLINK, 0, 0, 0, name, strlen(name), NULL, 0);
        pthread_mutex_unlock(&mu);
    }
    return r;
}

int unlink(const char *path) { init(); return unlinked(real_unlink(path), AT_FDCWD, path); }
int unlinkat(int dirfd, const char *path, int flags) {
    init();
    return unlinked(real_unlinkat(dirfd, path, flags), dirfd, path);
}

int close(int fd) {
    init();
    if (fd >= 0 && fd < MAX_FD) kind[fd] = KIND_NONE;
    return real_close(fd);
}

void powercut_mark(const char *text) {
    init();
    if (log_fd < 0) return;
    pthread_mutex_lock(&mu);
    emit(OP_MARK, 0, 0, 0, text, strlen(text), NULL, 0);
    pthread_mutex_unlock(&mu);
}
