"""The main job: ``python -m conv`` reruns the article's experiment on this machine.

The article (OpenGenus, "2D convolution in Python") convolved x (100, 32, 32, 3) with
w (3, 3, 3, 16) in float32, VALID, stride 1, and compared tf.nn.conv2d, seven pure-Python
loops and a NumPy matmul over kernel-position slices, by error and by wall time. This
package does the same with every conv method installed here (plugins included) plus
``"auto"``: for each one the largest absolute and relative error against the reference,
the best-of-N time, GFLOP/s, the fraction of this CPU's measured FMA peak, and the
speed-up against TensorFlow, PyTorch and pure Python, all measured side by side in one
process. ``--suite`` runs the public benchmark suite instead (with a "planned" row: a plan
made by ``conv.plan(..., effort="measure")``, then called); ``--wisdom FILE`` plans the
suite's problems that way and writes the wisdom to FILE.

One room a module:

* ``shapes``: the named problems and networks (one source, also for asv), ``--shape``;
* ``timing``: the timing loops (also asv's);
* ``frameworks``: the optional baselines (TensorFlow, PyTorch) and tools (matplotlib,
  threadpoolctl);
* ``reference``: what the errors are measured against, and the error measure;
* ``machine``: the FMA peak, the copy bandwidth, the machine's description, the memory
  check;
* ``selection``: which methods run;
* ``measure``: the contenders and one case's measurement (rows);
* ``planning``: plans made with effort="measure" (the "planned" rows), ``--wisdom``;
* ``network``: ``--network``, a network's layers against the frameworks;
* ``accuracy``: ``--accuracy``, each method's error on the accuracy grid, and the contract;
* ``report``: progress lines, tables and notes;
* ``plot``: the bar chart;
* ``options`` and ``cli``: the command line, which ties them together.

``shapes`` and ``timing`` use the standard library only: asv loads them by path when the
conv it measures (an older commit) has no ``conv.bench``. Everything else reaches conv
through its public API and ``conv._introspect``.
"""
