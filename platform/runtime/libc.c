/*
 * libc functions that musl implements with system calls, reimplemented over the
 * runtime's own console and clocks. They are linked before musl's libc.a, so musl's
 * versions never enter the image (check-image.sh proves no syscall instruction does).
 */
#include <sys/time.h>
#include <time.h>
#include "runtime.h"

/* stdio: QuickJS only prints diagnostics (memory dumps, internal errors); all of it
   goes to the console, whatever the stream. */
int vfprintf_console(const char *fmt, va_list ap)
{
    char buf[1024];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n > 0)
        console_write(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    return n;
}

int fprintf(FILE *f, const char *fmt, ...)
{
    (void)f;
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf_console(fmt, ap);
    va_end(ap);
    return n;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf_console(fmt, ap);
    va_end(ap);
    return n;
}

int fputc(int c, FILE *f)
{
    (void)f;
    char ch = (char)c;
    console_write(&ch, 1);
    return (unsigned char)c;
}

int putchar(int c)
{
    char ch = (char)c;
    console_write(&ch, 1);
    return (unsigned char)c;
}

int fputs(const char *s, FILE *f)
{
    (void)f;
    console_puts(s);
    return 0;
}

int puts(const char *s)
{
    console_puts(s);
    console_write("\n", 1);
    return 0;
}

int fflush(FILE *f)
{
    (void)f;
    return 0;
}

/* Time: the TSC since boot, anchored to the wall clock read at boot. */
int gettimeofday(struct timeval *tv, void *tz)
{
    (void)tz;
    double ms = clock_epoch_ms();
    int64_t us = (int64_t)(ms * 1000.0);
    tv->tv_sec = us / 1000000;
    tv->tv_usec = us % 1000000;
    return 0;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    double ms = id == CLOCK_REALTIME ? clock_epoch_ms() : clock_now_ms();
    int64_t ns = (int64_t)(ms * 1e6);
    ts->tv_sec = ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
    return 0;
}

time_t time(time_t *t)
{
    time_t now = (time_t)(clock_epoch_ms() / 1000.0);
    if (t)
        *t = now;
    return now;
}

/* The guest has no time-zone database: local time is UTC. (musl's gmtime_r would pull
   in its time-zone loader, which maps files with system calls.) */
int __secs_to_tm(long long t, struct tm *tm);

struct tm *localtime_r(const time_t *t, struct tm *tm)
{
    if (__secs_to_tm(*t, tm) < 0) {
        errno = EOVERFLOW;
        return NULL;
    }
    tm->tm_isdst = 0;
    tm->tm_gmtoff = 0;
    tm->tm_zone = "UTC";
    return tm;
}

struct tm *gmtime_r(const time_t *t, struct tm *tm)
{
    return localtime_r(t, tm);
}

/* stdio locks: a FILE never leaves the core that uses it, and a core runs one task. */
int __lockfile(FILE *f)
{
    (void)f;
    return 0;
}

void __unlockfile(FILE *f)
{
    (void)f;
}

/* musl flushes every FILE at exit through this; the guest powers off instead, and its
   console is unbuffered. Defining it keeps musl's exit-time machinery (and its locks,
   which use futex system calls) out of the image. */
void __stdio_exit_needed(void)
{
}
