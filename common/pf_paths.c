/*  pf_paths — where an installed pyfleet finds its own files (pf_paths.h). */
#include "pf_paths.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef PF_DEFAULT_PYTHON_PATH
#define PF_DEFAULT_PYTHON_PATH "bridge/python"
#endif

const char *pf_default_python_path (void)
{
    static char path[PATH_MAX];
    static const char *resolved = NULL;
    if (resolved) return resolved;
    resolved = PF_DEFAULT_PYTHON_PATH;

    char exe[PATH_MAX];
    ssize_t size = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (size <= 0) return resolved;
    exe[size] = 0;
    //  PREFIX/bin/pyfleet-worker -> PREFIX
    char *slash = strrchr (exe, '/');
    if (!slash) return resolved;
    *slash = 0;
    slash = strrchr (exe, '/');
    if (!slash) return resolved;
    *slash = 0;
    const char *prefix = *exe ? exe : "";
    char marker[sizeof path];
    int length = snprintf (marker, sizeof marker, "%s/%s/pyfleet_bridge/__main__.py", prefix,
                           PF_INSTALL_PYTHON_SUBDIR);
    if (length <= 0 || (size_t)length >= sizeof marker || access (marker, R_OK) != 0)
        return resolved;
    //  The marker path fitted, so its directory part fits too.
    memcpy (path, marker, (size_t)length + 1);
    path[strlen (prefix) + 1 + strlen (PF_INSTALL_PYTHON_SUBDIR)] = 0;
    resolved = path;
    return resolved;
}
