// The preload library has no public C API: QEMU loads it with LD_PRELOAD and the agent talks
// to it over a unix socket (see preload.c for the commands).
#ifndef UNDERSTUDY_PRELOAD_H
#define UNDERSTUDY_PRELOAD_H
#endif
