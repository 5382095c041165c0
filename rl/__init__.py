"""Reinforcement-learning search of mixed-precision quantization policies (HAQ / HERO style).

``rl.ddpg`` (torch): the DDPG agent of HAQ (Wang et al., CVPR 2019) with its episode API (one action
per component, one reward per episode), checkpoint/resume with bit-identical actions, and
``minmax_normalize`` for the per-component observations.

Importing the package is cheap: torch is imported only by ``rl.ddpg``.
"""
