"""asv benchmarks for conv.

Modules, by area:

* ``conv2d``    -- ``time_`` benchmarks: method x shape x dtype x threads, and the
                  strided / SAME / dilated variants of the public-suite shapes.
* ``baselines`` -- ``track_`` ratios of each method's time to TensorFlow's and to
                  the pure-Python loops' on the seed shape, measured side by side.
* ``memory``    -- ``peakmem_`` on the largest public shape.
* ``common``    -- shapes, the method list and cached inputs shared by the above
                  (no benchmarks of its own).
"""
