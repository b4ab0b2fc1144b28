"""What the compiled extensions were built with (the truth of the binary, not of setup.py).

Its presence also tells conv/__init__.py that this tree has been built."""

cdef extern from *:
    """
    #ifdef CONV_SERIAL
    static int conv_serial_build(void) { return 1; }
    #else
    static int conv_serial_build(void) { return 0; }
    #endif
    """
    int conv_serial_build()


def serial():
    """True for the serial build (CONV_SERIAL=1 at build time): every method on one thread."""
    return bool(conv_serial_build())
