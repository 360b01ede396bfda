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

A notebook checks its own parameters (`gentools.parameters`) and writes its metrics
(`gentools.record`) with the core alone; the runner reads what it wrote.
"""
