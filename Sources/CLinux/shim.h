/* Linux interfaces that Glibc's Swift module does not export: per-thread filesystem identity. */
#ifndef DRAC_CLINUX_SHIM_H
#define DRAC_CLINUX_SHIM_H
#include <sys/fsuid.h>
#endif
