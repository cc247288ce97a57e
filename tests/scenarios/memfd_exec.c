/* Run a program from an anonymous memory file: memfd-exec PROGRAM ARGS...
 * Copies PROGRAM into a memfd and fexecve()s it, the way fileless malware
 * runs a payload that never touches the disk. Test helper for the scenario suite. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PROGRAM ARGV0 [ARGS...]\n", argv[0]);
        return 2;
    }
    int in = open(argv[1], O_RDONLY);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0) { perror(argv[1]); return 1; }
    int mem = memfd_create("payload", MFD_CLOEXEC);
    if (mem < 0) { perror("memfd_create"); return 1; }
    off_t offset = 0;
    while (offset < st.st_size)
        if (sendfile(mem, in, &offset, st.st_size - offset) <= 0) { perror("sendfile"); return 1; }
    fexecve(mem, argv + 2, environ);
    perror("fexecve");
    return 1;
}
