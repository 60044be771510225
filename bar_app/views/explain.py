"""Teaching notes: what each view shows and the formula behind it (shown in collapsible expanders)."""

INTRO = """
**BAR** (Budget-Aware Regularization, Lemaire et al., CVPR 2019) prunes whole feature maps of a trained
network until its *activation volume* fits a budget you choose. Every feature map gets a learnable
**Hard Concrete gate** $z \\in [0, 1]$; a **barrier** turns the budget into a loss that is zero far below
the budget and infinite at it, and the budget **moves down** smoothly during pruning so the network sheds
volume gradually. Pick a preset on the left, press **Start**, and watch the views below.
"""

VOLUME = """
**What it shows.** The network's volume $V$ (blue) against the moving budget $b$ (red, dashed), both as a
fraction of the initial volume $V_0$, over training steps. The shaded bands are the phases.

$$V = \\sum_l A_l \\cdot \\#\\{i : \\hat z_{l,i} > 0\\}, \\qquad V_0 = \\sum_l A_l C_l$$

$A_l = H_l \\times W_l$ is the area of layer $l$'s maps, so a channel at 28×28 costs 16× one at 7×7.
During pruning $b$ slides from $(1+\\tau)V_0$ down to $B\\cdot V_0$:

$$b(p) = (1-\\pi(p))(1+\\tau)V_0 + \\pi(p)\\,B V_0,\\qquad \\pi_{\\text{sigmoid}}(p) = \\frac{\\sigma(k(p-\\tfrac12)) - c}{1-2c},\\ c = \\sigma(-k/2)$$

$a$ (green, dotted) sits just below $B\\cdot V_0$; below $a$ there is no pressure at all. A red × marks a
step where $V \\ge b$: the barrier was infinite there and the loss used its finite cap (a health metric:
a few are normal with stochastic steps, many mean λ or the gate learning rate is too high).
"""

BARRIER = """
**What it shows.** The barrier $f(V, a, b)$ for the budget $b$ at the chosen step, with the network's
volume at that step as a moving point. The sparsity loss is multiplied by it:

$$L = L_D + \\lambda\\, f(V, a, b)\\, L_S,\\qquad f(V,a,b) = \\begin{cases}0 & V \\le a\\\\ \\dfrac{(V-a)^2}{(b-a)(b-V)} & a < V < b\\\\ +\\infty & V \\ge b\\end{cases}$$

With $x = (V-a)/(b-a)$ this is $x^2/(1-x)$: zero with zero slope at $a$ (pressure switches on smoothly),
convex, and a wall at $b$. As $b$ moves left the point climbs the curve and the pressure grows; once
$V$ falls to $a$ the pressure vanishes and the network simply trains at the architecture it reached.
Because $f$ rescales itself to the gap $b-a$, the result depends far less on λ than plain L0 does.
"""

GATES = """
**What it shows.** For each gated layer, a histogram of its channels' probability of being alive,

$$P(z>0) = \\sigma\\big(\\log\\alpha - \\beta\\ln(-\\gamma/\\zeta)\\big)\\quad(=\\sigma(\\log\\alpha + \\beta\\ln 11)\\text{ by default}),$$

at the chosen epoch (epoch 0 = the teacher with open gates). Pruning pushes mass from the right (kept)
to the left (pruned). The sparsity loss is the area-weighted sum of these probabilities,
$L_S = \\sum_l A_l \\sum_i P(z_{l,i} > 0)$ — the *expected* volume, which, unlike $V$, has a gradient.

The heatmap shows one layer's channels (rows) over epochs (columns): *when did each channel die?*
A × marks the epoch from which its test gate $\\hat z = \\min(1, \\max(0, \\sigma(\\log\\alpha)(\\zeta-\\gamma)+\\gamma))$
stays exactly 0, i.e. $\\log\\alpha < -\\ln 11$ with the defaults.
"""

HARD_CONCRETE = """
**What it shows.** The Hard Concrete gate as a function of uniform noise $\\varepsilon \\sim U(0,1)$ — its
inverse CDF, which is also how training samples it:

$$s = \\sigma\\!\\left(\\frac{\\ln\\varepsilon - \\ln(1-\\varepsilon) + \\log\\alpha}{\\beta}\\right),\\quad \\bar s = s(\\zeta-\\gamma)+\\gamma,\\quad z = g(\\log\\alpha,\\varepsilon) = \\min(1, \\max(0, \\bar s))$$

Stretching $s$ to $(\\gamma, \\zeta) \\supset [0, 1]$ and clipping puts real probability on *exactly* 0
(channel off, grey band: $P(z=0)$) and *exactly* 1 (green band:
$P(z=1) = \\sigma(\\log\\alpha - \\beta\\ln\\frac{1-\\gamma}{\\zeta-1})$). A larger $\\log\\alpha$ shifts the rise left
(more often on); a smaller temperature $\\beta$ makes it steeper (closer to a hard 0/1 switch).
The sliders work without any training; the thin curves are real channels of the run you are viewing.
"""

CONNECTIVITY = """
**What it shows.** The network as it stands: which channels survived (test gate $\\hat z > 0$).
In a residual block $y = x + F(x)$, gating every BatchNorm leaves per block three sets: the stream
channels it **reads** ($R$), the inner channels it **keeps** ($M$) and the stream channels it **writes**
($W$). If $M$ is empty, $F$ is a constant and the block is an **identity**: it can be deleted. If $R$ or
$W$ is a strict subset, the block reads or writes only part of the stream — *mixed connectivity*.
A pruned network computes $y = x.\\text{index\\_add}(1, W, F(x_R))$ with weights sliced to $[M][:, R]$ and
$[W][:, M]$; each kept $\\hat z$ is folded into its BatchNorm, so it computes the same function.
The table lists kept / total channels per gated layer.
"""

TRAINING = """
**What it shows.** Test accuracy after each epoch (evaluated with the deterministic test gates $\\hat z$;
dotted: the teacher), the two loss terms per step — the data term $L_D$ and the budget term
$\\lambda f L_S$ (log scale; absent where $V \\le a$) — and training speed.

With knowledge distillation on, $L_D = \\alpha_{KD} T^2\\, \\mathrm{KL}(\\mathrm{softmax}(t/T)\\,\\|\\,\\mathrm{softmax}(s/T)) +
(1-\\alpha_{KD})\\,\\mathrm{CE}(y, s)$, from the frozen unpruned teacher $t$. Speed is images per second of
the training step alone (forward, backward, update), so the data pipeline and evaluations are excluded.
"""
