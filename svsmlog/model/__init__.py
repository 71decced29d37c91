"""The SVSM model: a simulated COCONUT-SVSM writing its logs with svsmlog.

config     the launch configuration (TOML) and its measured digest
services   what the SVSM's services log, from a seed, in virtual time
svsm       the model: routing, flush policy, panic path, debug mode, anchors
scenarios  boots with their endings, run over one device
truth      the ground truth: every record the writer reported durable
simulate   the entry point of ``svsmlog simulate``
samples    ``python -m svsmlog.model.samples OUTDIR``: the demo images
testkeys   fixed TEST-ONLY keys for the samples
"""
