"""Teaching notes: what each view shows and the formula behind it (shown in collapsible expanders)."""

INTRO = """
**BAR** (Budget-Aware Regularization, Lemaire et al., CVPR 2019) prunes whole feature maps of a trained
network until its *activation volume* fits a budget you choose. Every feature map gets a learnable
**Hard Concrete gate** $z \\in [0, 1]$, and a sparsity loss pushes the gates' chance of being open down. A
**barrier** $f(V, a, b)$ weighs that loss: it grows without bound as the volume $V$ nears the current
budget $b$, and it is zero only below $a$, a point just under the *final* budget. The budget $b$ **moves
down** during pruning from just above the initial volume to the final budget, so while it moves the
pressure is on all the time and the network sheds volume gradually; once $V$ has fallen to $a$ it simply
trains. Pick a preset on the left, press **Start**, and watch the views below.
"""

VOLUME = """
**What it shows.** The network's volume $V$ (blue) against the moving budget $b$ (red, dashed), both as a
fraction of the initial volume $V_0$, over training steps. The shaded bands are the phases.

$$V = \\sum_l A_l \\cdot \\#\\{i : \\hat z_{l,i} > 0\\}, \\qquad V_0 = \\sum_l A_l C_l$$

$A_l = H_l \\times W_l$ is the area of layer $l$'s maps, so a channel at 28×28 costs 16× one at 7×7.
During pruning $b$ slides from $(1+\\tau)V_0$ down to $B\\cdot V_0$ ($\\tau = 0.01$ by default, so $b$ starts 1 %
above $V_0$):

$$b(p) = (1-\\pi(p))(1+\\tau)V_0 + \\pi(p)\\,B V_0,\\qquad \\pi_{\\text{sigmoid}}(p) = \\frac{\\sigma(k(p-\\tfrac12)) - c}{1-2c},\\ c = \\sigma(-k/2)$$

$a = B V_0 - m(1+\\tau)V_0$ (green, dotted; margin $m = 10^{-4}$ by default) sits just below $B\\cdot V_0$;
below $a$ there is no pressure at all. A red × marks a step where $V \\ge b$: the barrier was infinite
there and the loss used its finite cap. $V$ counts gates that are exactly open, so it moves in jumps of a
whole channel while $b$ glides, and a gate pushed to close takes tens of steps to get there. So the
barrier looks ahead: it is evaluated at $b(p + L/T)$, the budget $L$ of the $T$ prune steps later, with
$L = \\lceil(\\ln 100 + \\ln 11)/\\eta_{\\text{gate}}\\rceil = 36$ the steps a gate needs to close
(docs/method.md). And because Adam moves every gate at the same speed once $\\lambda f$ swamps the data
term, $f$ rises at most 1.3× a step: the least useful gates feel the pressure first and close first,
instead of every gate on the same step. In the default demo at most one of the 468 prune steps ends
with $V \\ge b$ (seeds 0 to 4; README's measured numbers); with the paper's $f(V, a, b(p))$ (the five
advanced barrier settings "Barrier leads the schedule …", "Restart the gates' Adam …", "Barrier rises
gradually …", "No gate closes while the barrier is off" and "Ceiling ln 100 on log α" off) 87 to 109 do. Many marks mean the
gates cannot follow the budget: λ or the gate learning rate is too high for this schedule.
"""

BARRIER = """
**What it shows.** The barrier $f(V, a, b)$ for the budget $b$ it used at the chosen step — $b(p + L/T)$,
$L$ steps ahead of the schedule (the Volume note says why) — with the network's volume at that step as a
moving point. The sparsity loss is multiplied by it:

$$L = L_D + \\lambda\\, f(V, a, b)\\, L_S,\\qquad f(V,a,b) = \\begin{cases}0 & V \\le a\\\\ \\dfrac{(V-a)^2}{(b-a)(b-V)} & a < V < b\\\\ +\\infty & V \\ge b\\end{cases}$$

With $x = (V-a)/(b-a)$ this is $x^2/(1-x)$: zero with zero slope at $a$ (pressure switches on smoothly),
convex, and a wall at $b$. As $b$ moves left the point climbs the curve and the pressure grows; once
$V$ falls to $a$ the pressure vanishes and the network simply trains at the architecture it reached.
Because $f$ rescales itself to the gap $b-a$, the paper reports that where the volume ends depends far
less on λ than with plain L0 regularisation (the paper's claim). Measured on the full Fashion-MNIST (the figure below;
README, \"λ sensitivity\"), BAR lands at its budget B = 1/8 for every λ from 2e-8 to 2e-4 (V/V0 0.115 to
0.124), while L0 over three of those decades ends anywhere from V/V0 = 1.00 to 0.33. Two parts of this
implementation make it so: the finite stand-in for the wall is the same λ·f for every λ (the cap is 0.02/λ),
and $f$ rises at most 1.3× a step, so that a large λ does not close every gate at once.

**Without the barrier.** The method `l0` (under Loss in the set-up) trains the same gates with
$L = L_D + \\lambda L_S$ — L0 regularisation (Louizos, Welling and Kingma, *Learning Sparse Neural
Networks through L0 Regularization*, ICLR 2018): no barrier and no budget, so λ alone decides where
$V$ ends, and its volume chart has no budget line to stop at. The method `magnitude` is the
prune-then-fine-tune practice (Li et al., *Pruning Filters for Efficient ConvNets*, ICLR 2017; Liu et
al., *Network Slimming*, ICCV 2017), done with Torch-Pruning (Fang et al., *DepGraph*, CVPR 2023): the
teacher's least important channels (smallest BatchNorm $|\\gamma|$) are removed at once, down to a MAC
target, and the network fine-tunes; its volume is flat from the first step, and its first accuracy is
the network right after the cut. The preset "Why the barrier?" trains BAR, then L0, on the same demo.
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
The sliders work without any training. The thin curves are real channels of the run you are viewing:
their own $\\log\\alpha$, drawn with the sliders' $\\beta, \\gamma, \\zeta$ (the run's are in its settings; the
defaults are 2/3, −0.1, 1.1), so the sliders at those values show the channels as they trained.
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

**Reading the grid.** Each row is one channel of the residual stream (the maps the blocks add into).
Columns go from the input to the head: a *stream* column shows which stream channels are kept, then
each block has an $R$ column (the stream channels it reads) and a $W$ column (those it writes); a block
whose $M$ is empty is drawn as an identity column. $M$, the block's inner channels, is not a stream
channel, so it has no row here: its size is in the table and the bars.

**Volume and MACs differ.** $V$ counts surviving maps weighted by their area; a convolution's
multiply-adds grow with its input channels *times* its output channels (times the area), so pruning both
sides of a convolution removes MACs faster than volume. That is why "MACs kept" is usually well below
$V/V_0$ (about 18 % of the MACs at $V/V_0 \\approx 0.25$ in the quick demo).
"""

TRAINING = """
**What it shows.** Test accuracy after each epoch (evaluated with the deterministic test gates $\\hat z$;
dotted: the teacher), the two loss terms per step — the data term $L_D$ and the budget term
$\\lambda f L_S$ (log scale; absent where $V \\le a$) — and training speed.

With knowledge distillation on, $L_D = \\alpha_{KD} T^2\\, \\mathrm{KL}(\\mathrm{softmax}(t/T)\\,\\|\\,\\mathrm{softmax}(s/T)) +
(1-\\alpha_{KD})\\,\\mathrm{CE}(y, s)$, from the frozen unpruned teacher $t$. Speed is images per second of
the training step alone (forward, backward, update), so the data pipeline and evaluations are excluded.
"""

SANDBOX = """
**What it shows.** The barrier with no training: you hold the volume $V$ and move everything else.
**Left:** $f(V, a, b)$ at the budget $b$ of the chosen progress $p$, with $V$ on it. **Middle:** the schedule
$b(p)$ (red, dashed) from $(1+\\tau)V_0$ down to $B V_0$, the level $a = BV_0 - m(1+\\tau)V_0$ (green, dotted)
and your $V$ (blue): where the blue line meets the red curve, a network stuck at that volume hits the wall.
**Right:** the pressure $\\lambda f$ that multiplies the sparsity loss $L_S$ in $L = L_D + \\lambda f L_S$, for your
$V$ along the whole schedule, as the loss uses it (capped where $V \\ge b$; log scale, a gap where $f = 0$).

Try: hold $V = 0.6$ and move $p$ — the pressure is small early, climbs steeply as $b$ comes down to $V$, and
is capped past it. Switch the schedule: *exp* brings $b$ down early, *sigmoid* fastest in the middle.
Lower $B$: $a$ follows it down, and the pressure on a network at a given $V$ starts later. **Load the
shown run's values** puts a run's settings and its latest prune step here.
"""

REPLAY = """
**What it shows.** A run that has ended, played again: the volume $V$ against the moving budget $b$ up to
the frame's step (the faint lines are the whole run), the barrier $f(V, a, b)$ at that step with $V$ on it,
and the channels kept per gated layer ($\\hat z > 0$, stored at each epoch's end). Pick how long the
playback lasts: a one-minute run in 15 seconds is four times as fast. **Pause** to look at a moment: the
step where $V$ meets $b$, or the epoch where a layer's bar empties — its pruned bar turns red when the
layer has no channel left (in a residual block the stream then carries on without it; a plain layer's
death cuts the network).
"""
