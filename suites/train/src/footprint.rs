//! An analytic memory model of one training step, the memory counterpart of `flops.rs`: the
//! bytes every tensor of the candle engine takes (parameters, gradients, each optimizer moment,
//! the activations each module keeps under the execution policy, layer by layer and by dtype,
//! attention probabilities, loss buffers, transients) and when each is alive, walked in the
//! order the engine runs, giving the peak of the forward pass and of the whole step with the
//! live terms at each.
//!
//! Liveness rule (how the engine holds memory; the walk below applies it op by op):
//! 1. Persistent: parameters (f32), both Adam moments (in the policy's dtypes), the batch and
//!    the fixed position embedding live through the whole step.
//! 2. Graph-held: the inputs and outputs of candle ops that track gradients (block outputs,
//!    casts to the compute dtype, including the weights' copies, norm and projection outputs)
//!    live from their creation until the loss graph is dropped after the main backward pass.
//! 3. Op-held: what an op stores for its own backward pass (the fused block's normalised
//!    inputs, QKV, GELU output and derivative, kept attention probabilities; the fused head's
//!    (N, V) buffer; the materialised loss's log-softmax and one-hot) lives until that op's
//!    backward pass has run.
//! 4. Transients live within one op (forward or backward).
//! 5. Parameter gradients live from the op that first produces them until the optimizer step
//!    has run; activation gradients from the op that produces them to the op that consumes them.
//!    A weight's gradient made by candle's own product backward from a tracked input also keeps
//!    its zero-filled start, the product and the incoming gradient until the backward pass ends.
//! 6. A recomputed module keeps only each block's input (a checkpoint) and a copy of its last
//!    output; after the main graph is dropped, each block is recomputed from its checkpoint
//!    (its activations live again), backpropagated and freed, last block first.
//!
//! The backward pass visits modules as candle orders the graph: head and decoder, then the
//! contrastive loss, the text tower and the image encoder; recomputed modules after that,
//! text tower before image encoder.
//!
//! Not modelled: buffers a process allocates once (the matrix-product packing buffers and the
//! thread pool, a few MB, paid by the first recipe of a process), allocator slack, and tensors
//! under 1 KB per layer.

use crate::config::{ModelConfig, StackDims, CAPTION_LEN, TEXT_LEN, V1_QUERIES, VOCAB};
use crate::fused::Kernels;
use crate::params::{Init, ParamStore};
use crate::policy::{AttentionProbs, Execution, LossBuffers, MomentDtype};
use crate::recipe::{build_with, Recipe};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the model is asked about.
#[derive(Debug, Clone)]
pub struct Setting<'a> {
    pub recipe: Recipe,
    pub cfg: &'a ModelConfig,
    pub batch: usize,
    pub exec: &'a Execution,
    pub kernels: Kernels,
    /// OpenVision's two texts as one 2B batch (the released policies) or two passes (ovbench).
    pub text_one_batch: bool,
    /// Modules that do not compute in f32 run the portable ops throughout (the policies), not
    /// the fused layer norm (`ovbench`, not modelled in reduced precision).
    pub portable_off_f32: bool,
    /// Threads of the fused kernels' per-thread scratch.
    pub threads: usize,
}

/// The parts of a model, for labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    ImageEncoder,
    TextTower,
    Decoder,
    Head,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::ImageEncoder => "image encoder",
            Part::TextTower => "text tower",
            Part::Decoder => "decoder",
            Part::Head => "head and loss",
        }
    }
}

/// A term of the footprint: what a byte is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Term {
    Parameters,
    AdamFirstMoment {
        dtype: Dt,
    },
    AdamSecondMoment {
        dtype: Dt,
    },
    Gradients,
    /// The batch and the fixed position embedding.
    Inputs,
    /// What a module keeps for its backward pass (rule 2 and 3), by dtype.
    Activations {
        part: Part,
        dtype: Dt,
    },
    /// A recomputed module's block inputs and last output (rule 6).
    Checkpoints {
        part: Part,
    },
    /// (B, H, T, T) attention probabilities kept for the backward pass.
    AttentionProbabilities {
        part: Part,
        dtype: Dt,
    },
    /// Compute-dtype copies of the f32 master weights, kept by the graph.
    WeightCopies {
        part: Part,
    },
    /// The loss's (N, V) buffers: logits, log-softmax, one-hot, or the fused kernel's one.
    LossBuffers,
    /// Gradients of activations on their way through the backward pass.
    ActivationGradients,
    /// What a weight's gradient from candle's own product backward references until the
    /// backward pass ends: its zero-filled start, the product and the incoming gradient.
    GradientGraphs,
    /// Op temporaries.
    Transient,
}

/// Storage dtype of a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dt {
    F32,
    Bf16,
}

impl Dt {
    fn of(bytes: usize) -> Dt {
        if bytes == 2 {
            Dt::Bf16
        } else {
            Dt::F32
        }
    }
    fn name(self) -> &'static str {
        match self {
            Dt::F32 => "f32",
            Dt::Bf16 => "bf16",
        }
    }
}

impl Term {
    pub fn label(&self) -> String {
        match self {
            Term::Parameters => "parameters (f32)".into(),
            Term::AdamFirstMoment { dtype } => format!("Adam first moment ({})", dtype.name()),
            Term::AdamSecondMoment { dtype } => format!("Adam second moment ({})", dtype.name()),
            Term::Gradients => "parameter gradients (f32)".into(),
            Term::Inputs => "batch and fixed position embedding".into(),
            Term::Activations { part, dtype } => {
                format!("{} activations ({})", part.name(), dtype.name())
            }
            Term::Checkpoints { part } => format!("{} checkpoints (f32)", part.name()),
            Term::AttentionProbabilities { part, dtype } => {
                format!("{} attention probabilities ({})", part.name(), dtype.name())
            }
            Term::WeightCopies { part } => format!("{} weight copies (bf16)", part.name()),
            Term::LossBuffers => "loss buffers (f32, N x V)".into(),
            Term::ActivationGradients => "activation gradients (in flight)".into(),
            Term::GradientGraphs => {
                "gradient graphs (kept by weight gradients until the backward pass ends)".into()
            }
            Term::Transient => "largest op transient".into(),
        }
    }
}

/// One term's bytes at a peak.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TermBytes {
    pub term: Term,
    pub label: String,
    pub bytes: u64,
}

/// The live terms at one high point.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Peak {
    pub bytes: u64,
    /// Where in the step it happens.
    pub at: String,
    pub terms: Vec<TermBytes>,
}

/// What one block of a module keeps, by dtype (rule 2 and 3), as the model counts it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRow {
    pub part: Part,
    pub blocks: usize,
    pub recomputed: bool,
    /// Per block, kept through the forward pass (0 when recomputed: see checkpoint).
    pub f32_bytes: u64,
    pub bf16_bytes: u64,
    pub attention_probs_bytes: u64,
    pub weight_copy_bytes: u64,
    /// Per block, when recomputed: its input.
    pub checkpoint_bytes: u64,
}

/// The model's answer for one recipe at one per-device batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Footprint {
    pub recipe: Recipe,
    pub batch: usize,
    pub params: u64,
    /// Parameters, moments, batch and position embedding.
    pub persistent_bytes: u64,
    /// Peak of the forward pass (the counting allocator's `forward_peak_over_baseline_bytes`).
    pub forward: Peak,
    /// Peak of the whole step (`peak_over_baseline_bytes`).
    pub step: Peak,
    pub layers: Vec<LayerRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    #[error("the memory model covers --kernels fused and portable, not {0:?}")]
    Kernels(Kernels),
    #[error("the memory model covers reduced precision as the policies run it (portable ops), not the ovbench policy's --dtype {0}")]
    OvbenchDtype(String),
    #[error("counting parameters: {0}")]
    Build(#[from] candle_core::Error),
}

// ---------------------------------------------------------------------------------------------
// The ledger: live allocations by term, the running peak and what was live at it.

type Id = usize;

struct Ledger {
    live: BTreeMap<Id, (Term, u64)>,
    next: Id,
    cur: u64,
    peak: u64,
    at: String,
    terms: BTreeMap<Term, u64>,
    phase: String,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            live: BTreeMap::new(),
            next: 0,
            cur: 0,
            peak: 0,
            at: String::new(),
            terms: BTreeMap::new(),
            phase: String::new(),
        }
    }

    fn alloc(&mut self, term: Term, bytes: u64) -> Id {
        let id = self.next;
        self.next += 1;
        if bytes > 0 {
            self.live.insert(id, (term, bytes));
            self.cur += bytes;
            if self.cur > self.peak {
                self.peak = self.cur;
                self.at = self.phase.clone();
                self.terms.clear();
                for (t, b) in self.live.values() {
                    *self.terms.entry(*t).or_default() += b;
                }
            }
        }
        id
    }

    fn free(&mut self, id: Id) {
        if let Some((_, b)) = self.live.remove(&id) {
            self.cur -= b;
        }
    }

    fn free_all(&mut self, ids: impl IntoIterator<Item = Id>) {
        for id in ids {
            self.free(id);
        }
    }

    /// A transient of `bytes` on top of what is live now.
    fn touch(&mut self, term: Term, bytes: u64) {
        let id = self.alloc(term, bytes);
        self.free(id);
    }

    fn reset_peak(&mut self) {
        self.peak = self.cur;
        self.at = self.phase.clone();
        self.terms.clear();
        for (t, b) in self.live.values() {
            *self.terms.entry(*t).or_default() += b;
        }
    }

    fn peak(&self) -> Peak {
        Peak {
            bytes: self.peak,
            at: self.at.clone(),
            terms: self
                .terms
                .iter()
                .map(|(t, b)| TermBytes {
                    term: *t,
                    label: t.label(),
                    bytes: *b,
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Module walks.

/// A module's execution as the engine runs it.
#[derive(Clone, Copy)]
struct Mx {
    part: Part,
    /// Bytes per element of the compute dtype.
    cs: u64,
    recompute: bool,
    /// Whether the module runs ovbench's fused CPU kernels (else the portable ops).
    fused: bool,
}

/// What the forward pass of a module left for its backward pass.
#[derive(Default)]
struct Held {
    /// Graph-held, freed when the loss graph is dropped.
    graph: Vec<Id>,
    /// Per block (forward order): op-held state, freed at that block's backward pass.
    blocks: Vec<BlockHeld>,
    /// Checkpoints of a recomputed module (forward order) and its leaf copy.
    checkpoints: Vec<Id>,
    leaf: Option<Id>,
}

#[derive(Default)]
struct BlockHeld {
    /// The block's output: graph-held (or the next checkpoint when recomputing).
    out: Option<Id>,
    /// The per-op path: every graph-held tensor of the block.
    graph: Vec<Id>,
    /// The fused op's saved state, in the order its backward pass frees it.
    act: Vec<Id>,
    dact: Vec<Id>,
    ln2: Vec<Id>,
    attn: Vec<Id>,
    qkv: Vec<Id>,
    ln1: Vec<Id>,
    /// Kept probabilities (or the fused block's mask when it recomputes them).
    probs: Vec<Id>,
}

impl BlockHeld {
    fn all_but_out(self) -> Vec<Id> {
        let mut v = self.graph;
        for part in [
            self.act, self.dact, self.ln2, self.attn, self.qkv, self.ln1, self.probs,
        ] {
            v.extend(part);
        }
        v
    }
}

struct Sim<'a> {
    s: &'a Setting<'a>,
    l: Ledger,
    /// Parameters whose gradient buffer exists already (a second use adds into it).
    have_grad: std::collections::BTreeSet<String>,
    grads: Vec<Id>,
    /// Gradient graphs, freed when the main backward pass ends.
    graphs: Vec<Id>,
    layers: Vec<LayerRow>,
}

const F: u64 = 4;

impl<'a> Sim<'a> {
    /// Whether the fused CPU block runs for a module.
    fn fused_block(&self, m: Mx) -> bool {
        m.fused && m.cs == F
    }

    fn act(&self, m: Mx, cs: u64) -> Term {
        Term::Activations {
            part: m.part,
            dtype: Dt::of(cs as usize),
        }
    }

    /// A weight used in f32 by candle's own product (a bias-free projection, or a biased one
    /// under fused kernels) with a tracked input: its gradient references the zero-filled
    /// start, the product and the incoming (rows x out) gradient until the backward pass ends.
    fn product_grad(&mut self, name: &str, m: Mx, k: u64, out: u64, rows: u64, bias: bool) {
        let composed = m.cs == F && (!bias || m.fused);
        if composed && !self.have_grad.contains(name) {
            let id = self
                .l
                .alloc(Term::GradientGraphs, (2 * k * out + rows * out) * F);
            self.graphs.push(id);
        }
        self.grad(name, (k * out + if bias { out } else { 0 }) * F);
    }

    /// A parameter gradient of `bytes`, once per parameter name.
    fn grad(&mut self, name: &str, bytes: u64) {
        if self.have_grad.insert(name.to_string()) {
            let id = self.l.alloc(Term::Gradients, bytes);
            self.grads.push(id);
        }
    }

    /// `x W (+ b)` of rows x k -> out (layers::dense), the input in `in_cs` bytes per element;
    /// graph-held pieces go to `held`. `contiguous`: whether the input is (a narrow is not).
    /// As the engine decides: product and bias as one portable op when the *input* is not f32
    /// (or under `--kernels portable`), else the product and a broadcast addition, both kept.
    #[allow(clippy::too_many_arguments)]
    fn dense(
        &mut self,
        m: Mx,
        held: &mut Vec<Id>,
        rows: u64,
        k: u64,
        out: u64,
        bias: bool,
        in_cs: u64,
        contiguous: bool,
    ) {
        let cs = m.cs;
        // The input in the compute dtype (a cast copies; a non-contiguous input is copied by
        // the cast or by the reshape to rows).
        if in_cs != cs || !contiguous {
            held.push(self.l.alloc(self.act(m, cs), rows * k * cs));
        }
        if cs != F {
            let wc = Term::WeightCopies { part: m.part };
            held.push(self.l.alloc(wc, k * out * cs));
            if bias {
                held.push(self.l.alloc(wc, out * cs));
            }
        }
        // candle's bf16 product goes through an f32 result.
        let wide = if cs != F { rows * out * F } else { 0 };
        let portable = bias && (!m.fused || in_cs != F);
        if portable {
            // Product then bias inside one op: the product is a transient.
            let t = self.l.alloc(Term::Transient, rows * out * cs + wide);
            held.push(self.l.alloc(self.act(m, cs), rows * out * cs));
            self.l.free(t);
        } else {
            let t = self.l.alloc(Term::Transient, wide);
            held.push(self.l.alloc(self.act(m, cs), rows * out * cs));
            self.l.free(t);
            if bias {
                held.push(self.l.alloc(self.act(m, cs), rows * out * cs));
            }
        }
    }

    /// Layer norm over rows x d of an f32 input (the norm runs in the master dtype).
    fn layer_norm(&mut self, m: Mx, held: &mut Vec<Id>, rows: u64, d: u64, contiguous: bool) {
        if !contiguous {
            held.push(self.l.alloc(self.act(m, F), rows * d * F));
        }
        if m.fused {
            held.push(self.l.alloc(self.act(m, F), rows * d * F));
        } else {
            // Portable: centred copy, its square and the normalised copy come and go.
            let t = self.l.alloc(Term::Transient, 2 * rows * d * F);
            held.push(self.l.alloc(self.act(m, F), rows * d * F));
            self.l.free(t);
        }
    }

    /// One pre-LN block over `seqs` sequences of `t` tokens, forward. Returns what it holds.
    fn block_fwd(&mut self, m: Mx, d: StackDims, seqs: u64, t: u64, masked: bool) -> BlockHeld {
        let (w, f, h) = (d.width as u64, d.mlp_dim as u64, d.heads as u64);
        let r = seqs * t;
        let probs = seqs * h * t * t;
        let keep = self.s.exec.attention_probs == AttentionProbs::Keep;
        let mut bh = BlockHeld::default();
        if self.fused_block(m) {
            let a = self.act(m, F);
            // The mask as the op's own copy; LN1's x̂ and 1/σ; the normalised input (transient).
            let mask_copy = self
                .l
                .alloc(Term::Transient, if masked { t * t * F } else { 0 });
            bh.ln1.push(self.l.alloc(a, (r * w + r) * F));
            let xn = self.l.alloc(Term::Transient, r * w * F);
            bh.qkv.push(self.l.alloc(a, 3 * r * w * F));
            if keep {
                let p = Term::AttentionProbabilities {
                    part: m.part,
                    dtype: Dt::F32,
                };
                bh.probs.push(self.l.alloc(p, probs * F));
            } else {
                self.l
                    .touch(Term::Transient, self.s.threads as u64 * t * t * F);
            }
            bh.attn.push(self.l.alloc(a, r * w * F));
            bh.out = Some(self.l.alloc(a, r * w * F));
            bh.ln2.push(self.l.alloc(a, (r * w + r) * F));
            bh.act.push(self.l.alloc(a, r * f * F));
            bh.dact.push(self.l.alloc(a, r * f * F));
            self.l.free(xn);
            if keep || !masked {
                self.l.free(mask_copy);
            } else {
                bh.probs.push(mask_copy);
            }
            return bh;
        }
        // Per-op path (bf16, or portable kernels): everything graph-held but the kept
        // probabilities.
        let mut g = Vec::new();
        let cs = m.cs;
        self.layer_norm(m, &mut g, r, w, true);
        self.dense(m, &mut g, r, w, 3 * w, true, F, true);
        // Attention core: per-head q, k, v, then the f32 scores, their masked copy, the shifted
        // exponential and the probabilities at the softmax's high point.
        let core = 4 * r * w * cs + 4 * probs * F;
        let t_id = self.l.alloc(Term::Transient, core);
        if keep {
            let p = Term::AttentionProbabilities {
                part: m.part,
                dtype: Dt::of(cs as usize),
            };
            bh.probs.push(self.l.alloc(p, probs * cs));
        }
        self.l.free(t_id);
        // The output, computed without a graph, is held as the op's input, and copied as its
        // value.
        g.push(self.l.alloc(self.act(m, cs), r * w * cs));
        g.push(self.l.alloc(self.act(m, cs), r * w * cs));
        self.dense(m, &mut g, r, w, w, true, cs, true);
        if cs != F {
            g.push(self.l.alloc(self.act(m, F), r * w * F));
        }
        g.push(self.l.alloc(self.act(m, F), r * w * F));
        self.layer_norm(m, &mut g, r, w, true);
        self.dense(m, &mut g, r, w, f, true, F, true);
        g.push(self.l.alloc(self.act(m, cs), r * f * cs));
        self.dense(m, &mut g, r, f, w, true, cs, true);
        if cs != F {
            g.push(self.l.alloc(self.act(m, F), r * w * F));
        }
        bh.out = Some(self.l.alloc(self.act(m, F), r * w * F));
        bh.graph = g;
        bh
    }

    /// The backward pass of one block (the fused op's, or candle's for the per-op path), its
    /// weights' gradients named `prefix`. Graph-held tensors stay (rule 2).
    fn block_bwd(&mut self, m: Mx, d: StackDims, seqs: u64, t: u64, prefix: &str, bh: BlockHeld) {
        let (w, f) = (d.width as u64, d.mlp_dim as u64);
        let r = seqs * t;
        let keep = self.s.exec.attention_probs == AttentionProbs::Keep;
        let ag = Term::ActivationGradients;
        if self.fused_block(m) {
            self.grad(&format!("{prefix}.fc2"), (f * w + w) * F);
            self.l.free_all(bh.act);
            let dh = self.l.alloc(Term::Transient, r * f * F);
            self.l.free_all(bh.dact);
            self.grad(&format!("{prefix}.fc1"), (w * f + f) * F);
            let xn = self.l.alloc(Term::Transient, r * w * F);
            self.l.free(dh);
            let dx = self.l.alloc(ag, r * w * F);
            self.grad(&format!("{prefix}.ln2"), 2 * w * F);
            self.l.free_all(bh.ln2);
            self.grad(&format!("{prefix}.out"), (w * w + w) * F);
            self.l.free_all(bh.attn);
            let dqkv = self.l.alloc(Term::Transient, 3 * r * w * F);
            let slots = if keep { 1 } else { 2 };
            self.l
                .touch(Term::Transient, slots * self.s.threads as u64 * t * t * F);
            self.l.free_all(bh.qkv);
            self.l.free_all(bh.probs);
            self.grad(&format!("{prefix}.qkv"), (3 * w * w + 3 * w) * F);
            self.l.free(dqkv);
            self.grad(&format!("{prefix}.ln1"), 2 * w * F);
            self.l.free(xn);
            self.l.free_all(bh.ln1);
            // dx is the gradient of the block's input, consumed by the block below.
            self.l.free(dx);
            return;
        }
        // Per-op path: candle's backward of each op. Its high points: GELU's backward, which
        // candle composes from about eighteen (R, F) tensors that live until the node before it
        // is processed; the attention's, four f32 (B, H, T, T) buffers (the probabilities'
        // gradient and the softmax backward) beside per-head q, k, v; each dense layer's input
        // gradient with its zero-filled accumulator, its sum and candle's f32 product.
        let cs = m.cs;
        let h = d.heads as u64;
        let probs = seqs * h * t * t;
        let gelu_bwd = 18 * r * f * cs;
        let attn_bwd = 4 * probs * F + 4 * r * w * cs;
        let dense_bwd = r * f * (3 * cs + F);
        self.grad(&format!("{prefix}.mlp"), (2 * w * f + f + w) * F);
        let g_out = self.l.alloc(ag, r * w * F);
        self.l.touch(Term::Transient, dense_bwd);
        self.l.touch(Term::Transient, gelu_bwd);
        self.grad(&format!("{prefix}.ln"), 4 * w * F);
        self.grad(&format!("{prefix}.attn"), (4 * w * w + 4 * w) * F);
        self.l.touch(Term::Transient, attn_bwd);
        self.l.free_all(bh.probs);
        self.l.free(g_out);
    }

    /// A stack of blocks, forward; with recomputation it keeps only the inputs. `input` is the
    /// stack's input (checkpoint 0 when recomputing).
    #[allow(clippy::too_many_arguments)]
    fn stack_fwd(
        &mut self,
        m: Mx,
        d: StackDims,
        seqs: u64,
        t: u64,
        masked: bool,
        held: &mut Held,
        input: Id,
    ) {
        let r = seqs * t;
        let w = d.width as u64;
        self.layer_row(m, d, seqs, t, masked);
        if !m.recompute {
            for _ in 0..d.depth {
                let mut bh = self.block_fwd(m, d, seqs, t, masked);
                held.graph.extend(bh.out.take());
                held.graph.extend(std::mem::take(&mut bh.graph));
                held.blocks.push(bh);
            }
            return;
        }
        let cp = Term::Checkpoints { part: m.part };
        held.checkpoints.push(input);
        for i in 0..d.depth {
            let mut bh = self.block_fwd(m, d, seqs, t, masked);
            let out = bh.out.take().expect("block output");
            let out_bytes = self.l.live.get(&out).map(|x| x.1).unwrap_or(0);
            self.l.free_all(bh.all_but_out());
            // The detached output lives on as the next checkpoint.
            self.l.free(out);
            let next = self.l.alloc(cp, out_bytes.max(r * w * F));
            if i + 1 < d.depth {
                held.checkpoints.push(next);
            } else {
                // The last output is copied into the leaf variable, then freed.
                held.leaf = Some(self.l.alloc(cp, r * w * F));
                self.l.free(next);
            }
        }
    }

    /// The per-block kept bytes of a module, measured on a scratch ledger.
    fn layer_row(&mut self, m: Mx, d: StackDims, seqs: u64, t: u64, masked: bool) {
        let saved = std::mem::replace(&mut self.l, Ledger::new());
        let bh = self.block_fwd(m, d, seqs, t, masked);
        let mut row = LayerRow {
            part: m.part,
            blocks: d.depth,
            recomputed: m.recompute,
            f32_bytes: 0,
            bf16_bytes: 0,
            attention_probs_bytes: 0,
            weight_copy_bytes: 0,
            checkpoint_bytes: if m.recompute {
                seqs * t * d.width as u64 * F
            } else {
                0
            },
        };
        for (term, b) in self.l.live.values() {
            match term {
                Term::Activations { dtype: Dt::F32, .. } => row.f32_bytes += b,
                Term::Activations {
                    dtype: Dt::Bf16, ..
                } => row.bf16_bytes += b,
                Term::AttentionProbabilities { .. } => row.attention_probs_bytes += b,
                Term::WeightCopies { .. } => row.weight_copy_bytes += b,
                _ => {}
            }
        }
        let _ = bh;
        self.l = saved;
        if let Some(prev) = self.layers.iter().position(|x| x.part == m.part) {
            self.layers[prev] = row;
        } else {
            self.layers.push(row);
        }
    }

    /// Backward of a (non-recomputed) stack, last block first.
    fn stack_bwd(&mut self, m: Mx, d: StackDims, seqs: u64, t: u64, prefix: &str, held: &mut Held) {
        let blocks = std::mem::take(&mut held.blocks);
        for (i, bh) in blocks.into_iter().enumerate().rev() {
            self.block_bwd(m, d, seqs, t, &format!("{prefix}.{i}"), bh);
        }
    }

    /// Backward of a recomputed stack after the graph is gone: each block recomputed from its
    /// checkpoint (copied into a variable), then backpropagated through Σ out · g.
    #[allow(clippy::too_many_arguments)]
    fn stack_remat_bwd(
        &mut self,
        m: Mx,
        d: StackDims,
        seqs: u64,
        t: u64,
        prefix: &str,
        held: &mut Held,
    ) {
        let r = seqs * t;
        let w = d.width as u64;
        let ag = Term::ActivationGradients;
        // The leaf's gradient starts it; the leaf goes.
        let mut g = self.l.alloc(ag, r * w * F);
        if let Some(leaf) = held.leaf.take() {
            self.l.free(leaf);
        }
        let checkpoints = std::mem::take(&mut held.checkpoints);
        for (i, cp) in checkpoints.into_iter().enumerate().rev() {
            let xv = self.l.alloc(Term::Checkpoints { part: m.part }, r * w * F);
            self.l.free(cp);
            let mut bh = self.block_fwd(m, d, seqs, t, false);
            let out = bh.out.take();
            let graph = std::mem::take(&mut bh.graph);
            // out · g, and the gradients of out and of g that candle's backward makes.
            let prod = self.l.alloc(Term::Transient, r * w * F);
            let dg = self.l.alloc(Term::Transient, 2 * r * w * F);
            self.block_bwd(m, d, seqs, t, &format!("{prefix}.{i}"), bh);
            let dx = self.l.alloc(ag, r * w * F);
            self.l.free_all([prod, dg, xv, g]);
            self.l.free_all(out);
            self.l.free_all(graph);
            g = dx;
        }
        held.leaf = Some(g);
    }
}

// ---------------------------------------------------------------------------------------------
// The recipes.

/// Parameter count of `recipe` at `cfg` (shapes only, no memory).
pub fn param_count(recipe: Recipe, cfg: &ModelConfig) -> Result<u64, FootprintError> {
    let ps = ParamStore::with(
        0,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
        Init::Shapes,
    );
    Ok(build_with(recipe, cfg, ps)?.params.total() as u64)
}

/// Predicts the step of `s.recipe` at `s.batch` under the policy's execution.
pub fn predict(s: &Setting<'_>) -> Result<Footprint, FootprintError> {
    if s.kernels == Kernels::Composed {
        return Err(FootprintError::Kernels(s.kernels));
    }
    let cfg = s.cfg;
    let params = param_count(s.recipe, cfg)?;
    let e = s.exec;
    let mut sim = Sim {
        s,
        l: Ledger::new(),
        have_grad: Default::default(),
        grads: Vec::new(),
        graphs: Vec::new(),
        layers: Vec::new(),
    };
    let cs = |d: crate::device::DTypeArg| d.dtype().size_in_bytes() as u64;
    let fused = |c: u64| s.kernels == Kernels::Fused && (c == F || !s.portable_off_f32);
    for m in [
        Some(e.modules.image_encoder),
        e.modules.text_encoder,
        Some(e.modules.decoder),
    ]
    .into_iter()
    .flatten()
    {
        if cs(m.compute) != F && fused(cs(m.compute)) {
            return Err(FootprintError::OvbenchDtype(m.compute.name().into()));
        }
    }
    let mx = |part, m: crate::policy::ModuleExec| Mx {
        part,
        cs: cs(m.compute),
        recompute: m.recompute,
        fused: fused(cs(m.compute)),
    };
    let img = mx(Part::ImageEncoder, e.modules.image_encoder);
    let txt = e.modules.text_encoder.map(|m| mx(Part::TextTower, m));
    let dec = Mx {
        recompute: false,
        ..mx(Part::Decoder, e.modules.decoder)
    };
    let head_cs = cs(e.modules.head.compute);

    let b = s.batch as u64;
    let v = cfg.vision;
    let n = cfg.patches() as u64;
    let p = cfg.model.patch as u64;
    let res = cfg.resolution as u64;
    let dimg = v.width as u64;
    let vocab = VOCAB as u64;

    // Persistent state.
    sim.l.phase = "model build".into();
    let moment = |d: MomentDtype| d.size_in_bytes() as u64;
    let dt = |d: MomentDtype| match d {
        MomentDtype::F32 => Dt::F32,
        MomentDtype::Bf16 => Dt::Bf16,
    };
    sim.l.alloc(Term::Parameters, params * F);
    sim.l.alloc(Term::Inputs, n * dimg * F);
    sim.l.alloc(
        Term::AdamFirstMoment {
            dtype: dt(e.optimizer.mu),
        },
        params * moment(e.optimizer.mu),
    );
    sim.l.alloc(
        Term::AdamSecondMoment {
            dtype: dt(e.optimizer.nu),
        },
        params * moment(e.optimizer.nu),
    );
    let batch_elems = 3 * res * res + CAPTION_LEN as u64 * 2 + 2 * TEXT_LEN as u64 + 3 * 127 + 128;
    sim.l.alloc(Term::Inputs, b * batch_elems * F);
    let persistent = sim.l.cur;

    // ---- forward
    sim.l.phase = "forward pass".into();
    sim.l.reset_peak();
    let mut vit = Held::default();
    let t_img = n + 1;
    // Patch embedding: the patches (a contiguous copy), the dense layer, + positions, [CLS; ·].
    let mut eg = Vec::new();
    eg.push(sim.l.alloc(sim.act(img, F), b * n * p * p * 3 * F));
    sim.dense(img, &mut eg, b * n, p * p * 3, dimg, true, F, true);
    if img.cs != F {
        eg.push(sim.l.alloc(sim.act(img, F), b * n * dimg * F));
    }
    eg.push(sim.l.alloc(sim.act(img, F), b * n * dimg * F));
    let x0 = sim.l.alloc(sim.act(img, F), b * t_img * dimg * F);
    if img.recompute {
        // Detached: the embedding's graph goes, its output becomes checkpoint 0.
        sim.l.free_all(eg);
        let cp = sim
            .l
            .alloc(Term::Checkpoints { part: img.part }, b * t_img * dimg * F);
        sim.l.free(x0);
        sim.stack_fwd(img, v, b, t_img, false, &mut vit, cp);
    } else {
        vit.graph = eg;
        vit.graph.push(x0);
        sim.stack_fwd(img, v, b, t_img, false, &mut vit, x0);
    }
    let mut misc = Vec::new();
    match s.recipe {
        Recipe::Ov1 => {
            // Pooled embedding: mean over patches, then the final norm.
            misc.push(sim.l.alloc(sim.act(img, F), 2 * b * dimg * F));
            sim.layer_norm(img, &mut misc, b, dimg, true);
        }
        Recipe::Ov2 => {
            // Kept tokens: the patches copied to rows, gathered.
            let k = cfg.kept_tokens() as u64;
            misc.push(sim.l.alloc(sim.act(img, F), b * n * dimg * F));
            misc.push(sim.l.alloc(sim.act(img, F), b * k * dimg * F));
        }
    }

    // Text tower (OpenVision).
    let mut towers: Vec<(Held, u64)> = Vec::new();
    if let Some(tm) = txt {
        let td = cfg.text_encoder.dims;
        let tw = td.width as u64;
        let tl = TEXT_LEN as u64;
        let passes: Vec<u64> = if s.text_one_batch {
            vec![2 * b]
        } else {
            vec![b, b]
        };
        for &seqs in &passes {
            let mut held = Held::default();
            let mut g = Vec::new();
            if s.text_one_batch {
                g.push(sim.l.alloc(Term::Inputs, seqs * tl * F));
            }
            // Token embeddings, + positions.
            g.push(sim.l.alloc(sim.act(tm, F), seqs * tl * tw * F));
            let x0 = sim.l.alloc(sim.act(tm, F), seqs * tl * tw * F);
            if tm.recompute {
                sim.l.free_all(g.drain(..));
                let cp = sim
                    .l
                    .alloc(Term::Checkpoints { part: tm.part }, seqs * tl * tw * F);
                sim.l.free(x0);
                sim.stack_fwd(tm, td, seqs, tl, false, &mut held, cp);
            } else {
                g.push(x0);
                sim.stack_fwd(tm, td, seqs, tl, false, &mut held, x0);
            }
            // Final norm, pooled token projected to the image width.
            sim.layer_norm(tm, &mut g, seqs * tl, tw, true);
            sim.dense(tm, &mut g, seqs, tw, dimg, false, F, false);
            held.graph.extend(g);
            towers.push((held, seqs));
        }
        // Dual contrastive loss: normalised embeddings, similarities, cross-entropies.
        let bb = b * b;
        misc.push(
            sim.l
                .alloc(sim.act(img, F), 2 * (6 * b * dimg + 12 * bb) * F),
        );
    }

    // Decoder.
    let mut dech = Held::default();
    let (dd, seq_t, rows_out, masked) = match s.recipe {
        Recipe::Ov1 => {
            let dd = cfg.v1_decoder.dims;
            let w = dd.width as u64;
            let tw = cfg.text_encoder.dims.width as u64;
            let alt = TEXT_LEN as u64 - 1;
            let mut g = Vec::new();
            // The image encoder's patch tokens are f32 (its residual stream), whatever it computes in.
            sim.dense(dec, &mut g, b * n, dimg, w, true, F, false);
            if dec.cs != F {
                g.push(sim.l.alloc(sim.act(dec, F), b * n * w * F));
            }
            sim.dense(dec, &mut g, b * alt, tw, w, true, F, false);
            if dec.cs != F {
                g.push(sim.l.alloc(sim.act(dec, F), b * alt * w * F));
            }
            let t = n + alt + V1_QUERIES as u64;
            g.push(sim.l.alloc(sim.act(dec, F), b * t * w * F));
            dech.graph = g;
            (dd, t, V1_QUERIES as u64, true)
        }
        Recipe::Ov2 => {
            let dd = cfg.v2_decoder.dims;
            let w = dd.width as u64;
            let k = cfg.kept_tokens() as u64;
            let l = CAPTION_LEN as u64 - 1;
            let mut g = Vec::new();
            sim.dense(dec, &mut g, b * k, dimg, w, false, F, true);
            if dec.cs != F {
                g.push(sim.l.alloc(sim.act(dec, F), b * k * w * F));
            }
            g.push(sim.l.alloc(sim.act(dec, F), b * l * w * F));
            let t = k + l;
            g.push(sim.l.alloc(sim.act(dec, F), b * t * w * F));
            dech.graph = g;
            (dd, t, l, true)
        }
    };
    let dw = dd.width as u64;
    // The (T, T) mask: held by the graph where portable softmax ops read it.
    let mask = sim.l.alloc(Term::Inputs, seq_t * seq_t * F);
    let x0 = *dech.graph.last().expect("decoder input");
    sim.stack_fwd(dec, dd, b, seq_t, masked, &mut dech, x0);
    if sim.fused_block(dec) && e.attention_probs == AttentionProbs::Keep {
        sim.l.free(mask);
    } else {
        dech.graph.push(mask);
    }
    // Final norm on the text (or query) positions: a contiguous copy and the output.
    let nrows = b * rows_out;
    let mut hg = Vec::new();
    sim.layer_norm(dec, &mut hg, nrows, dw, false);

    // Head and loss.
    let lb = Term::LossBuffers;
    let head = Mx {
        part: Part::Head,
        cs: head_cs,
        recompute: false,
        fused: fused(head_cs),
    };
    let loss_mode = e.loss_buffers;
    let mut loss_op = Vec::new();
    match loss_mode {
        LossBuffers::Materialized => {
            // Head and loss as one op: logits, log-softmax and one-hot op-held; the shifted
            // logits and their exponential, the zeros under the one-hot and the product come
            // and go.
            let nv = nrows * vocab;
            if head.cs != F {
                sim.l.touch(Term::Transient, nv * (head.cs + F));
            }
            loss_op.push(sim.l.alloc(lb, nv * F));
            let shifted = sim.l.alloc(Term::Transient, nv * F);
            sim.l.touch(Term::Transient, nv * F);
            loss_op.push(sim.l.alloc(lb, nv * F));
            sim.l.free(shifted);
            let zeros = sim.l.alloc(Term::Transient, nv * F);
            loss_op.push(sim.l.alloc(lb, nv * F));
            sim.l.free(zeros);
            sim.l.touch(Term::Transient, nv * F);
        }
        LossBuffers::Fused if head.fused && head.cs == F => {
            // The fused head: one (N, V) buffer (the logits' gradient).
            loss_op.push(sim.l.alloc(lb, nrows * vocab * F));
        }
        LossBuffers::Fused => {
            // Head product (graph-held) read by the per-row kernel; the portable one shifts the
            // logits and takes their exponential on the way.
            let nv = nrows * vocab;
            sim.dense(head, &mut hg, nrows, dw, vocab, false, F, true);
            if head.cs != F {
                hg.push(sim.l.alloc(lb, nv * F));
            }
            if !head.fused {
                sim.l.touch(Term::Transient, 2 * nv * F);
            }
        }
    }
    let forward = sim.l.peak();

    // ---- backward (main graph)
    sim.l.phase = "backward pass: head and loss".into();
    let ag = Term::ActivationGradients;
    match loss_mode {
        LossBuffers::Materialized => {
            // Logits go; p = exp(log p), log p goes; p − one-hot, both go; × g: the logits'
            // gradient; then h's and W's gradients, W's added into a zero-filled one by candle.
            let nv = nrows * vocab;
            sim.l.free(loss_op[0]);
            let p_ = sim.l.alloc(Term::Transient, nv * F);
            sim.l.free(loss_op[1]);
            let diff = sim.l.alloc(Term::Transient, nv * F);
            sim.l.free(p_);
            sim.l.free(loss_op[2]);
            loss_op.clear();
            let dl = sim.l.alloc(ag, nv * head.cs.max(F));
            sim.l.free(diff);
            let dh = sim.l.alloc(ag, nrows * dw * F);
            let dwt = sim.l.alloc(Term::Transient, dw * vocab * F);
            sim.l.free(dl);
            let zeros = sim.l.alloc(Term::Transient, dw * vocab * F);
            sim.grad("head", dw * vocab * F);
            sim.l.free_all([zeros, dwt, dh]);
        }
        LossBuffers::Fused if head.fused && head.cs == F => {
            sim.grad("head", dw * vocab * F);
            sim.l.touch(Term::Transient, 2 * nrows * dw * F);
            sim.l.free_all(loss_op.drain(..));
        }
        LossBuffers::Fused => {
            // The per-row kernel's backward (softmax, × g, − one-hot) lands in a zero-filled
            // gradient of the logits; then the product's backward.
            let nv = nrows * vocab;
            let t = sim.l.alloc(Term::Transient, 2 * nv * F);
            let dl = sim.l.alloc(ag, nv * F);
            sim.l.free(t);
            sim.l.touch(Term::Transient, nrows * dw * F);
            sim.product_grad("head", head, dw, vocab, nrows, false);
            sim.l.free(dl);
        }
    }
    sim.l.phase = "backward pass: decoder".into();
    sim.grad("decoder.norm", 2 * dw * F);
    // The norm's packed backward buffer, then the gradient spread back over the sequence.
    let ln_buf = sim.l.alloc(ag, (nrows + 2) * dw * F);
    let dseq = sim.l.alloc(ag, b * seq_t * dw * F);
    sim.l.free(ln_buf);
    sim.stack_bwd(dec, dd, b, seq_t, "decoder", &mut dech);
    sim.l.free(dseq);
    // Input projections and embeddings.
    match s.recipe {
        Recipe::Ov1 => {
            let tw = cfg.text_encoder.dims.width as u64;
            let alt = TEXT_LEN as u64 - 1;
            sim.product_grad("decoder.img_proj", dec, dimg, dw, b * n, true);
            sim.product_grad("decoder.txt_proj", dec, tw, dw, b * alt, true);
            sim.grad("decoder.queries", V1_QUERIES as u64 * dw * F);
            sim.l.touch(ag, b * seq_t * dw * F + b * n * dimg * F);
        }
        Recipe::Ov2 => {
            let k = cfg.kept_tokens() as u64;
            sim.product_grad("decoder.img_proj", dec, dimg, dw, b * k, false);
            // The embedding's gradient: zeros, then index-add into a new buffer.
            sim.l.touch(Term::Transient, vocab * dw * F);
            sim.grad("decoder.embed", vocab * dw * F);
            sim.l.touch(ag, b * seq_t * dw * F + b * n * dimg * F);
        }
    }

    // Text towers (last pass first), then the image encoder.
    let td = cfg.text_encoder.dims;
    let tl = TEXT_LEN as u64;
    if let Some(tm) = txt {
        sim.l.phase = "backward pass: text tower".into();
        let tw = td.width as u64;
        for (held, seqs) in towers.iter_mut().rev() {
            sim.product_grad("text.proj", tm, tw, dimg, *seqs, false);
            sim.grad("text.norm", 2 * tw * F);
            sim.l.touch(ag, (*seqs * tl + 2) * tw * F);
            if !tm.recompute {
                let g = sim.l.alloc(ag, *seqs * tl * tw * F);
                sim.stack_bwd(tm, td, *seqs, tl, "text", held);
                sim.l.touch(Term::Transient, vocab * tw * F);
                sim.grad("text.embed", vocab * tw * F);
                sim.grad("text.pos", tl * tw * F);
                sim.l.free(g);
            }
        }
    }
    sim.l.phase = "backward pass: image encoder".into();
    if s.recipe == Recipe::Ov1 {
        sim.grad("img.norm", 2 * dimg * F);
    }
    if !img.recompute {
        let g = sim.l.alloc(ag, b * t_img * dimg * F);
        sim.stack_bwd(img, v, b, t_img, "img", &mut vit);
        sim.grad("img.patch_embed", (p * p * 3 * dimg + dimg + dimg) * F);
        sim.l.touch(ag, b * n * p * p * 3 * F + b * n * dimg * F);
        sim.l.free(g);
    }

    // The loss graph is dropped, and the gradients' graphs with it (retain_grads).
    sim.l.phase = "backward pass: graph dropped".into();
    let graphs = std::mem::take(&mut sim.graphs);
    sim.l.free_all(graphs);
    for (held, _) in &mut towers {
        sim.l.free_all(held.graph.drain(..));
    }
    sim.l.free_all(vit.graph.drain(..));
    sim.l.free_all(dech.graph.drain(..));
    sim.l.free_all(hg.drain(..));
    sim.l.free_all(misc.drain(..));

    // Recomputed modules: text tower(s) (last first), then the image encoder.
    if let Some(tm) = txt.filter(|t| t.recompute) {
        sim.l.phase = "backward pass: text tower recomputed".into();
        let tw = td.width as u64;
        for (held, seqs) in towers.iter_mut().rev() {
            sim.stack_remat_bwd(tm, td, *seqs, tl, "text", held);
            // Embeddings recomputed and backpropagated.
            sim.l
                .touch(Term::Transient, 2 * *seqs * tl * tw * F + vocab * tw * F);
            sim.grad("text.embed", vocab * tw * F);
            sim.grad("text.pos", tl * tw * F);
            if let Some(g) = held.leaf.take() {
                sim.l.free(g);
            }
        }
    }
    if img.recompute {
        sim.l.phase = "backward pass: image encoder recomputed".into();
        sim.stack_remat_bwd(img, v, b, t_img, "img", &mut vit);
        sim.l.touch(
            Term::Transient,
            b * n * p * p * 3 * F * 2 + 4 * b * t_img * dimg * F,
        );
        sim.grad("img.patch_embed", (p * p * 3 * dimg + dimg + dimg) * F);
        if let Some(g) = vit.leaf.take() {
            sim.l.free(g);
        }
    }
    // Whatever parameter gradients the walk did not name (embeddings' small parts, biases of
    // projections, the temperature): the rest of the parameter count.
    sim.l.phase = "backward pass: end".into();
    let named: u64 = sim
        .grads
        .iter()
        .filter_map(|id| sim.l.live.get(id).map(|x| x.1))
        .sum();
    let rest = (params * F).saturating_sub(named);
    sim.l.alloc(Term::Gradients, rest);
    let step = sim.l.peak();
    Ok(Footprint {
        recipe: s.recipe,
        batch: s.batch,
        params,
        persistent_bytes: persistent,
        forward,
        step,
        layers: sim.layers,
    })
}

// ---------------------------------------------------------------------------------------------
// Questions asked of the model: the largest batch under a cap, and Table 4.

/// The largest per-device batch whose predicted step peak fits under `cap` bytes (searched up
/// to `limit`; the peak grows with the batch). 0 when not even the smallest batch fits.
pub fn max_batch_under(s: &Setting<'_>, cap: u64, limit: usize) -> Result<usize, FootprintError> {
    let min = if s.recipe == Recipe::Ov1 { 2 } else { 1 };
    let fits = |b: usize| -> Result<bool, FootprintError> {
        Ok(predict(&Setting {
            batch: b,
            ..s.clone()
        })?
        .step
        .bytes
            <= cap)
    };
    if !fits(min)? {
        return Ok(0);
    }
    let (mut lo, mut hi) = (min, min);
    while hi < limit && fits(hi)? {
        lo = hi;
        hi = (hi * 2).min(limit);
    }
    if hi == limit && fits(hi)? {
        return Ok(limit);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The model's prediction beside one row of the paper's Table 4.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Table4Row {
    pub id: String,
    pub recipe: Recipe,
    pub backbone: String,
    pub resolution: u32,
    /// The model measured: the paper's backbone on the pixels its patch grid sees.
    pub measured_model: String,
    pub measured_resolution: usize,
    pub per_chip_batch: usize,
    pub published_gb: Option<f64>,
    pub published_oom: bool,
    pub predicted: Footprint,
    /// Whether the predicted step peak fits under the paper's per-chip cap.
    pub predicted_fits: bool,
}

/// Table 4 as the replay's memory model predicts it under one policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Table4Prediction {
    pub policy: crate::policy::PolicyName,
    pub cap_bytes: u64,
    pub rows: Vec<Table4Row>,
    /// (backbone, recipe, largest per-chip batch under the cap).
    pub max_batch: Vec<(String, Recipe, usize)>,
}

fn paper_model(backbone: &str) -> (&'static str, usize) {
    match backbone {
        "SoViT-400M/14" => ("So400m/14", 14),
        _ => ("L/14", 14),
    }
}

/// Predicts every row of Table 4 under `policy` (the replay's kernels, one thread's scratch),
/// with the largest batch per backbone and recipe under `cap` bytes.
pub fn table4(
    policy: &crate::policy::ResolvedPolicy,
    kernels: Kernels,
    cap: u64,
) -> Result<Table4Prediction, Table4Error> {
    let t4 = ovbench_reference::table4()?;
    let ovbench = policy.name == crate::policy::PolicyName::Ovbench;
    let mut rows = Vec::new();
    let mut max_batch = Vec::new();
    for row in &t4.rows {
        let (model, patch) = paper_model(&row.backbone);
        let res = (row.resolution as usize / patch) * patch;
        let cfg = ModelConfig::new(
            model.parse().expect("valid model name"),
            res,
            0.35,
            crate::config::PrefixAttention::Causal,
        )
        .map_err(Table4Error::Config)?;
        let s = Setting {
            recipe: row.recipe,
            cfg: &cfg,
            batch: row.per_chip_batch as usize,
            exec: policy.execution(row.recipe),
            kernels,
            text_one_batch: !ovbench,
            portable_off_f32: !ovbench,
            threads: 1,
        };
        let predicted = predict(&s)?;
        if !max_batch
            .iter()
            .any(|(b, r, _)| b == &row.backbone && *r == row.recipe)
        {
            max_batch.push((
                row.backbone.clone(),
                row.recipe,
                max_batch_under(&s, cap, 1 << 14)?,
            ));
        }
        rows.push(Table4Row {
            id: row.id.clone(),
            recipe: row.recipe,
            backbone: row.backbone.clone(),
            resolution: row.resolution,
            measured_model: model.into(),
            measured_resolution: res,
            per_chip_batch: row.per_chip_batch as usize,
            published_gb: row.peak_memory_gb,
            published_oom: row.oom,
            predicted_fits: predicted.step.bytes <= cap,
            predicted,
        });
    }
    Ok(Table4Prediction {
        policy: policy.name,
        cap_bytes: cap,
        rows,
        max_batch,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum Table4Error {
    #[error(transparent)]
    Model(#[from] FootprintError),
    #[error(transparent)]
    Reference(#[from] ovbench_reference::ReferenceError),
    #[error("{0}")]
    Config(String),
}

/// One recipe at one batch: the model, and the counting allocator where checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checked {
    pub model: Footprint,
    /// The allocator's `forward_peak_over_baseline_bytes`.
    pub measured_forward_peak_bytes: Option<u64>,
    /// The allocator's `peak_over_baseline_bytes`.
    pub measured_step_peak_bytes: Option<u64>,
}

/// The record `ovbench memory --json` writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryReport {
    pub policy: crate::policy::ResolvedPolicy,
    pub model: crate::config::ModelName,
    pub resolution: usize,
    pub kernels: Kernels,
    pub rows: Vec<Checked>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table4: Option<Table4Prediction>,
}

/// Threads of the fused kernels' per-thread scratch in this process.
pub fn kernel_threads() -> usize {
    rayon::current_num_threads()
}

/// Refuses, before anything is allocated, a candle step on the host whose predicted peak
/// exceeds the host's memory: the model for the configuration's own kernels and policy, or,
/// where the model does not cover them (composed ops, the `ovbench` policy in reduced
/// precision), the fused f32 kernels' peak, which those only exceed. The error names the
/// predicted size.
pub fn refuse_beyond_host_memory(
    cfg: &crate::step::StepConfig,
    mcfg: &ModelConfig,
) -> Result<(), String> {
    use crate::device::{DTypeArg, DeviceArg};
    use crate::policy::PolicyName;
    if cfg.engine != crate::engine::EngineKind::Candle || cfg.device != DeviceArg::Cpu {
        return Ok(());
    }
    let host = ovbench_harness::limits::host_memory_bytes();
    if host == 0 {
        return Ok(());
    }
    let resolved = cfg.resolved_policy();
    let ovbench = cfg.policy == PolicyName::Ovbench;
    // The kernels' thread count without asking rayon: starting its pool here would move the
    // pool's allocations out of the first recipe's measured peak.
    let threads = match cfg.threads {
        0 => ovbench_harness::limits::logical_cpus(),
        n => n,
    };
    let floor_cfg = crate::step::StepConfig {
        dtype: DTypeArg::F32,
        kernels: Kernels::Fused,
        policy: PolicyName::Ovbench,
        ..cfg.clone()
    };
    let floor = floor_cfg.resolved_policy();
    for &recipe in &cfg.recipes {
        let own = Setting {
            recipe,
            cfg: mcfg,
            batch: cfg.batch,
            exec: resolved.execution(recipe),
            kernels: cfg.kernels,
            text_one_batch: !ovbench,
            portable_off_f32: !ovbench,
            threads,
        };
        let (bytes, what) = match predict(&own) {
            Ok(f) => (f.step.bytes, "predicts"),
            Err(_) => match predict(&Setting {
                exec: floor.execution(recipe),
                kernels: Kernels::Fused,
                text_one_batch: false,
                portable_off_f32: false,
                ..own
            }) {
                Ok(f) => (f.step.bytes, "puts at least"),
                Err(_) => continue,
            },
        };
        if bytes > host {
            return Err(format!(
                "--batch {} at --res {}: the memory model {what} {:.1} GB for {}'s step, more \
                 than this host's {:.1} GB of memory; lower --batch or --res \
                 (docs/policies-and-memory.md)",
                cfg.batch,
                cfg.resolution,
                bytes as f64 / 1e9,
                recipe.label(),
                host as f64 / 1e9
            ));
        }
    }
    Ok(())
}
