"""Campaigns that prove the claims of formats/svsmlog-v3.md §10 and respect its limits.

crash     every write prefix and every tear point of multi-boot runs: nothing durable lost,
          no false violation, torn tails reported as crashes, the next boot carries on
tamper    every class of change the host can make, with the outcome decided from the spec
hostile   structurally plausible hostile images and bad keys against the real CLI
report    the markdown tables (``python -m svsmlog.campaign --out docs/campaigns.md``)

Each campaign is parameterised by a size: ``CI`` for the test suite, ``FULL`` for the
figures in docs/campaigns.md.
"""
