"""POLY-EPO for verl, as an out-of-tree plugin: no fork, no patch to apply by hand.

Installing ``polyepo`` registers the ``verl.plugins`` entry point ``polyepo``; verl imports
this module in every process when ``verl`` itself is imported (unless
``VERL_USE_EXTERNAL_PLUGINS=none``). It then

1. registers the advantage estimator ``polyepo`` in verl's estimator registry
   (``algorithm.adv_estimator=polyepo``), and
2. adds a labelling step in front of the driver's ``compute_advantage``: it runs only when
   the estimator is ``polyepo``, decodes each prompt group's responses, labels their
   strategies (the LM judge, or a strategy function) and hands the labels to the
   estimator; the judge's counters go to verl's logger with the step's data metrics.

Why a step in front of ``compute_advantage``: verl 0.9.1 gives a registered estimator only
the token-level rewards, the response mask and the group ids (``uid``), never the text, and
its reward managers see one sample at a time, never a whole group. ``compute_advantage``
in ``verl.trainer.ppo.ray_trainer`` is the one place that holds the whole batch (token ids,
``uid``, raw prompts) on the driver right before the estimator runs.

Settings live under ``algorithm.polyepo`` (see ``polyepo_trainer.yaml`` beside this file)::

    algorithm:
      adv_estimator: polyepo
      polyepo:
        set_size: 4                 # n; rollout.n is N
        objective: polychromatic    # or mean, max
        estimator: exact
        tokenizer: ${actor_rollout_ref.model.path}
        judge:                      # or strategy: "my_module:my_function"
          endpoint: http://judge-host:8000/v1
          model: Qwen/Qwen3-32B
          prompt: math
          failure_policy: skip
"""

from __future__ import annotations

import importlib.util
import logging

_log = logging.getLogger("polyepo.verl")

# Without verl this module stays importable (for its documentation) and does nothing.
if importlib.util.find_spec("verl") is not None:
    try:
        from polyepo.verl.plugin import install

        install()
    except Exception as error:  # noqa: BLE001 - a broken plugin must not break verl's import
        # verl logs a plugin's import errors at debug level only; this must be seen.
        _log.warning("polyepo.verl could not install its hooks (%s): algorithm.adv_estimator=polyepo will fail", error)
