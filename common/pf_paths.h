/*  pf_paths — where an installed pyfleet finds its own files.

    The worker needs the pyfleet_bridge Python package. In the build tree it
    lives in the sources (PF_DEFAULT_PYTHON_PATH, compiled in); after
    `cmake --install` it is in PREFIX/share/pyfleet/python, and the install
    prefix is only known at run time (--prefix can be anything), so it is
    found relative to the running executable. */
#ifndef PF_PATHS_H_INCLUDED
#define PF_PATHS_H_INCLUDED

//  Where the installed bridge package goes, relative to the install prefix
//  (CMakeLists.txt installs it there: keep the two in step).
#define PF_INSTALL_PYTHON_SUBDIR "share/pyfleet/python"

//  The directory holding the pyfleet_bridge package: EXE_DIR/../share/pyfleet/
//  python when the running executable is installed (that directory holds
//  pyfleet_bridge/__main__.py), else the compiled-in PF_DEFAULT_PYTHON_PATH.
//  Never NULL; the string is static (computed once, not thread-safe on the
//  first call).
const char *pf_default_python_path (void);

#endif
