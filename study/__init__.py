"""The paper study (``make experiments``): the paper's tables and figures, rerun at our scale.

Every trained network is a *job* (method, starting model, training images, steps), saved in
``runs/experiments/jobs/`` when done; every measurement is cached in
``runs/experiments/eval/``. A rerun skips whatever is already there, so the whole run is
resumable, and a larger ``--steps`` or ``--crop`` starts new jobs (they are part of the
job's name). Results go to ``docs/results/experiments.json``, ``summary.json``, the
markdown tables ``experiments_tables.md`` and the figures ``fig3_*.png``, ``fig4_*.png``.

Models (paper section 4, in our words):

* ``t1`` of a domain: ``photo`` is the shipped base codec; ``astro`` and ``screen`` are the
  photo codec naively fine-tuned on all of that domain's training images (at our scale a
  model trained from scratch on them would be far worse than this).
* ``naive`` / ``selective`` / ``scratch``: full new codecs (see :mod:`nicodec.adapt`).
* ``cawf`` (K custom filters, the paper's adapter), ``cawf+affine`` (the same plus a
  per-channel scale and bias after every widened convolution: ``nicodec adapt
  --channel-affine``) and ``affine`` (a lighter adapter: per-channel scale and bias after
  every convolution plus its own entropy model, everything of the base frozen): the base
  stays frozen, so the source domain is coded by the unchanged base codec.
* ``joint``: the Table 2 reference, an 80-filter codec trained on both domains, started from
  :func:`nicodec.network.widen` of the source's t1 codec.
"""

