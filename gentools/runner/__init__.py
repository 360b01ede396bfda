"""The runner: gentools' notebooks as jobs, on top of the core (`gentools`).

    notebooks/*.ipynb, the `gentools` command (gentools/__main__.py)
        |
        v
    gentools/runner/   this layer: imports the core, papermill, nbformat, jupyter_client,
        |              dask and distributed
        v
    gentools/          the core, which never imports this layer

Its modules, in the order they build on one another:

    params.py        command-line text as a parameter value; a notebook's tiny test parameters
    kernels.py       the kernel manager papermill gets: IPC sockets, interruptible by a signal
    folders.py       run folders: the run's digest, the manifest read back, the folder's lock
    jobs.py          run / resume a notebook with papermill into its run folder, the manifest
    sweep_spec.py    a sweep spec (YAML) checked and expanded into runs
    sweep.py         a sweep run on a Dask cluster; its results table and figure
    compare.py       the comparison table across the image families, from their runs
    cli.py           `gentools run | sweep | list | show`

A notebook checks its own parameters (`gentools.parameters`) and writes its figures, a typed
`gentools.results` dataclass, with `gentools.record`: the core alone. The runner reads what it
wrote, the comparison back into the same dataclass.

From ``gentools run vae -p steps 20`` to ``metrics.json``: cli.py loads the notebook once,
``gentools.parameters.load_notebook("vae")`` (found in ``notebooks_dir()``, or a path given;
its bytes read and its parameters cell parsed into a ``Notebook``), and reads each ``-p``
value as its parameter's type. ``jobs.run`` takes that Notebook (a name or path is loaded
there instead, once) and hands it down, never resolving again: ``check_run`` validates the
values, ``check_data`` opens a data set named by ``data``, ``folders.reuse_dir`` /
``run_digest`` name the run folder from the notebook's bytes and the values, and
``_attempt`` writes the manifest and has papermill run the notebook into that folder,
injecting ``out_dir`` and the values that differ from the defaults. In the kernel, a
process of its own whose working folder is the notebook's, ``gentools.setup(globals(),
"vae.ipynb")`` checks those values against the parameters cell, as it does in JupyterLab,
the notebook builds its ``VAEResults`` and ``gentools.record`` writes them as ``metrics.json``
into ``out_dir``; ``jobs`` then closes the manifest with every output's sha256. A sweep loads
each notebook once to check its spec (sweep_spec.py) and once per run on its worker;
``resume`` loads the one its manifest names.
"""
