"""Beyond CTRL: other ways to reach the same KL-regularised target (Part "Beyond CTRL").

Every method here optimises (or samples) the tilted law p*(x | c, y) ∝ p_pre(x | c) p(y | x, c)^{1/alpha}
that CTRL fine-tunes towards, reusing the sampler's Gaussian steps (`ctrl_teach.diffusion`) and the
reward contract (`ctrl_teach.target`). This package sits above `ctrl` and `baselines`.
"""
