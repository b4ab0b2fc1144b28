"""asv benchmarks for conv.

Modules, by area:

* ``conv2d``    -- ``time_`` benchmarks: method x shape x dtype x threads, and the
                  strided / SAME / dilated variants of the public-suite shapes.
* ``baselines`` -- ``track_`` ratios of each method's time to TensorFlow's and to
                  the pure-Python loops' on the seed shape, measured side by side.
* ``memory``    -- ``peakmem_`` on the largest public shape.
* ``network``   -- ``time_`` of ResNet-50's conv layers, per method and batch size.
* ``plans``     -- ``time_`` of conv.plan's calls against conv.conv2d (and PyTorch's
                  per-call overhead): a tiny problem, the deep layer, ResNet-50.
* ``common``    -- shapes, the method list and cached inputs shared by the above
                  (no benchmarks of its own).
"""
