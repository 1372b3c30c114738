"""Knowledge distillation: a small student learns from a big teacher's softened outputs.

Conventions (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"):
- logits z of shape (N, C); p^T = softmax(z / T) is the distribution "at temperature T";
- the teacher's soft targets p_t = softmax(z_t / T) carry *dark knowledge*: how much
  a 7 looks like a 1, which the one-hot label throws away; a high T makes those small
  probabilities visible;
- the KD loss mixes a soft term and the usual hard-label term,

      L = α · T² · KL(p_t ‖ p_s) + (1 − α) · CE(z_s, y),     KL summed over classes, averaged over N,

  and its gradient with respect to the student's logits is

      ∂L/∂z_s = α · T · (p_s − p_t) / N + (1 − α) · (softmax(z_s) − onehot(y)) / N.

  The soft term alone has gradient (p_s − p_t) / (N T), which shrinks like 1/T²
  once T is large (p_s − p_t ≈ (z_s − z_t)/(C T)); multiplying by T² keeps its share
  of the gradient comparable when T changes, so α means the same thing at every T.

The teacher is never trained here: its logits are plain arrays (computed under
`no_grad`), so no gradient can reach its parameters. Also here: hard-label
distillation (the teacher's argmax as the label), ensembles (averaged soft targets)
and hint learning (FitNets, Romero et al. 2015: a learned regressor maps a student
layer onto a teacher layer, trained by mean squared error).

    loss = kd_loss(student(x), teacher_logits, y, temperature=4.0, alpha=0.9)
"""
from __future__ import annotations

import numpy as np

import tinyq as tq
from tinyq import functional as F
from tinyq import nn, ops
from tinyq.tensor import Tensor


def check_temperature(temperature) -> float:
    """T must be a finite number > 0 (T = 1 is the ordinary softmax)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return float(temperature)


def check_alpha(alpha) -> float:
    """α weighs the soft term against the hard-label term: α in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def _logits_array(logits, name: str) -> np.ndarray:
    array = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    if array.ndim != 2:
        raise ValueError(f"{name} must be logits of shape (N, C), got shape {array.shape}")
    return array


def check_logit_shapes(student_logits, teacher_logits) -> None:
    """Student and teacher must score the same N samples over the same C classes."""
    student = _logits_array(student_logits, "student logits")
    teacher = _logits_array(teacher_logits, "teacher logits")
    if student.shape[1] != teacher.shape[1]:
        raise ValueError(f"teacher and student must have the same number of classes: the teacher gives "
                         f"{teacher.shape[1]}, the student {student.shape[1]}")
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"teacher and student logits must cover the same batch: teacher {teacher.shape[0]} "
                         f"rows, student {student.shape[0]}")


def softmax_with_temperature(logits, temperature: float = 1.0):
    """p_i = exp(z_i / T) / Σ_j exp(z_j / T), over the last axis; a Tensor in, a Tensor out (an array in, an array out)."""
    temperature = check_temperature(temperature)
    as_array = not isinstance(logits, Tensor)
    z = tq.tensor(np.asarray(logits)) if as_array else logits
    ### BEGIN SOLUTION 11.1
    probabilities = F.softmax(z / temperature, axis=-1)
    ### END SOLUTION
    return probabilities.data if as_array else probabilities


def soft_target_loss(student_logits: Tensor, teacher_probs, temperature: float) -> Tensor:
    """KL(p_t ‖ p_s) = (1/N) Σ_n Σ_c p_t[n,c] (log p_t[n,c] − log p_s[n,c]),  p_s = softmax(z_s / T); 0 log 0 = 0."""
    temperature = check_temperature(temperature)
    teacher_probs = np.asarray(teacher_probs.data if isinstance(teacher_probs, Tensor) else teacher_probs,
                               dtype=student_logits.dtype)
    check_logit_shapes(student_logits, teacher_probs)
    ### BEGIN SOLUTION 11.2
    log_student = ops.log_softmax(student_logits / temperature, axis=1)
    safe = np.where(teacher_probs > 0, teacher_probs, 1.0)
    teacher_entropy_term = np.sum(teacher_probs * np.log(safe))          # Σ p_t log p_t: a constant
    cross_term = (log_student * teacher_probs).sum()                     # Σ p_t log p_s
    loss = (cross_term * -1.0 + teacher_entropy_term) / student_logits.shape[0]
    ### END SOLUTION
    return loss


def kd_loss(student_logits: Tensor, teacher_logits, labels=None, temperature: float = 4.0, alpha: float = 0.9,
            scale_by_t2: bool = True) -> Tensor:
    """L = α · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α) · CE(z_s, y)  (Hinton et al. 2015).

    teacher_logits is an array or a Tensor; only its values are used (no gradient reaches the teacher).
    scale_by_t2=False drops the T² (to show what it does). labels may be None only when α = 1.
    """
    if not isinstance(student_logits, Tensor):
        raise TypeError(f"kd_loss expects the student logits as a Tensor, got {type(student_logits).__name__}")
    temperature, alpha = check_temperature(temperature), check_alpha(alpha)
    check_logit_shapes(student_logits, teacher_logits)
    teacher = _logits_array(teacher_logits, "teacher logits").astype(student_logits.dtype, copy=False)
    teacher_probs = softmax_with_temperature(teacher, temperature)
    soft = soft_target_loss(student_logits, teacher_probs, temperature)
    weight = alpha * (temperature ** 2 if scale_by_t2 else 1.0)
    if alpha == 1.0 and labels is None:
        return soft * weight
    if labels is None:
        raise ValueError(f"kd_loss needs labels when alpha < 1 (alpha = {alpha})")
    return soft * weight + F.cross_entropy(student_logits, labels) * (1.0 - alpha)


def kd_logit_gradient(student_logits, teacher_logits, labels, temperature: float = 4.0, alpha: float = 0.9,
                      scale_by_t2: bool = True) -> np.ndarray:
    """∂L/∂z_s = α T (p_s − p_t)/N + (1 − α)(softmax(z_s) − onehot(y))/N, in closed form (NumPy, no autograd).

    With scale_by_t2=False the first term is α (p_s − p_t)/(N T).
    """
    temperature, alpha = check_temperature(temperature), check_alpha(alpha)
    check_logit_shapes(student_logits, teacher_logits)
    z_s = _logits_array(student_logits, "student logits")
    z_t = _logits_array(teacher_logits, "teacher logits").astype(z_s.dtype, copy=False)
    n = z_s.shape[0]
    p_s, p_t = softmax_with_temperature(z_s, temperature), softmax_with_temperature(z_t, temperature)
    onehot = np.eye(z_s.shape[1], dtype=z_s.dtype)[np.asarray(labels)]
    factor = temperature if scale_by_t2 else 1.0 / temperature
    return alpha * factor * (p_s - p_t) / n + (1.0 - alpha) * (softmax_with_temperature(z_s, 1.0) - onehot) / n


def hard_label_loss(student_logits: Tensor, teacher_logits) -> Tensor:
    """L = CE(z_s, argmax z_t): hard-label distillation, the teacher's decision as the label."""
    check_logit_shapes(student_logits, teacher_logits)
    return F.cross_entropy(student_logits, np.argmax(_logits_array(teacher_logits, "teacher logits"), axis=1))


def ensemble_soft_targets(teacher_logits: list, temperature: float = 1.0, weights=None) -> np.ndarray:
    """p = Σ_k w_k softmax(z_k / T) with Σ w_k = 1 (equal weights by default): the ensemble's soft targets."""
    temperature = check_temperature(temperature)
    if len(teacher_logits) == 0:
        raise ValueError("ensemble_soft_targets needs at least one teacher's logits")
    arrays = [_logits_array(z, f"teacher {k} logits") for k, z in enumerate(teacher_logits)]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"every teacher must give logits of one shape, got {[a.shape for a in arrays]}")
    weights = np.full(len(arrays), 1.0 / len(arrays)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(arrays),) or np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
        raise ValueError(f"weights must be {len(arrays)} non-negative numbers summing to 1, got {weights}")
    ### BEGIN SOLUTION 11.3
    probabilities = [softmax_with_temperature(a, temperature) for a in arrays]
    target = sum(w * p for w, p in zip(weights, probabilities))
    ### END SOLUTION
    return np.asarray(target, dtype=arrays[0].dtype)


def ensemble_kd_loss(student_logits: Tensor, teacher_logits: list, labels=None, temperature: float = 4.0,
                     alpha: float = 0.9, weights=None) -> Tensor:
    """L = α T² KL(p̄_t ‖ p_s) + (1 − α) CE(z_s, y), p̄_t the ensemble's averaged soft targets."""
    alpha = check_alpha(alpha)
    target = ensemble_soft_targets(teacher_logits, temperature, weights).astype(student_logits.dtype)
    loss = soft_target_loss(student_logits, target, temperature) * (alpha * check_temperature(temperature) ** 2)
    if alpha < 1.0:
        if labels is None:
            raise ValueError(f"ensemble_kd_loss needs labels when alpha < 1 (alpha = {alpha})")
        loss = loss + F.cross_entropy(student_logits, labels) * (1.0 - alpha)
    return loss


class HintRegressor(nn.Module):
    """r(f_s) = W f_s + b: maps a student layer's features (width d_s) onto the teacher's (width d_t) (FitNets).

    Features of shape (N, d) use a Linear; feature maps (N, C, H, W) use a 1x1 Conv2d (set conv=True).
    """

    def __init__(self, student_width: int, teacher_width: int, conv: bool = False, rng=None):
        super().__init__()
        for name, value in (("student_width", student_width), ("teacher_width", teacher_width)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"HintRegressor {name} must be a positive int, got {value!r}")
        self.conv = conv
        self.map = (nn.Conv2d(student_width, teacher_width, 1, rng=rng) if conv
                    else nn.Linear(student_width, teacher_width, rng=rng))

    def forward(self, features):
        return self.map(features)


def hint_loss(student_features: Tensor, teacher_features, regressor: nn.Module) -> Tensor:
    """L_hint = mean over every element of (r(f_s) − f_t)²  (Romero et al. 2015); f_t is a constant."""
    teacher = np.asarray(teacher_features.data if isinstance(teacher_features, Tensor) else teacher_features)
    ### BEGIN SOLUTION 11.4
    mapped = regressor(student_features)
    if mapped.shape != teacher.shape:
        raise ValueError(f"the regressor maps the student's features to shape {mapped.shape}, but the "
                         f"teacher's features have shape {teacher.shape}")
    difference = mapped - teacher.astype(mapped.dtype, copy=False)
    loss = (difference * difference).mean()
    ### END SOLUTION
    return loss


class Distiller:
    """One training step: z_t = teacher(x) under no_grad in eval mode; L = kd_loss(student(x), z_t, y); step.

    teachers: one model or a list (an ensemble, averaged soft targets). mode: "soft" (the KD loss) or
    "hard" (cross-entropy on the teacher's argmax). hint = (student_split, teacher_split, regressor, weight)
    adds weight · hint_loss on the outputs of student[:student_split] and teacher[:teacher_split]
    (Sequential models). The optimizer must hold the student's (and regressor's) parameters and none of
    the teachers'.
    """

    def __init__(self, student: nn.Module, teachers, optimizer, temperature: float = 4.0, alpha: float = 0.9,
                 mode: str = "soft", scale_by_t2: bool = True, hint=None, scheduler=None):
        self.teachers = list(teachers) if isinstance(teachers, (list, tuple)) else [teachers]
        if not self.teachers:
            raise ValueError("Distiller needs at least one teacher")
        if mode not in ("soft", "hard"):
            raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
        teacher_ids = {id(p) for t in self.teachers for p in t.parameters()}
        if any(id(p) in teacher_ids for p in optimizer.params):
            raise ValueError("the optimizer holds teacher parameters: a Distiller trains the student only")
        self.student, self.optimizer, self.scheduler = student, optimizer, scheduler
        self.temperature, self.alpha = check_temperature(temperature), check_alpha(alpha)
        self.mode, self.scale_by_t2, self.hint = mode, scale_by_t2, hint

    def teacher_outputs(self, x: np.ndarray):
        """(logits of each teacher, the first teacher's hint features or None), computed without gradients."""
        logits, features = [], None
        with tq.no_grad():
            for k, teacher in enumerate(self.teachers):
                with teacher.evaluating():
                    if self.hint is not None and k == 0:
                        features = teacher[:self.hint[1]](tq.tensor(x))
                        logits.append(teacher[self.hint[1]:](features).data)
                    else:
                        logits.append(teacher(tq.tensor(x)).data)
        return logits, (None if features is None else features.data)

    def loss(self, x: np.ndarray, y: np.ndarray) -> Tensor:
        teacher_logits, teacher_features = self.teacher_outputs(x)
        student_features = None
        if self.hint is not None:
            student_features = self.student[:self.hint[0]](tq.tensor(x))
            student_logits = self.student[self.hint[0]:](student_features)
        else:
            student_logits = self.student(tq.tensor(x))
        if self.mode == "hard":
            loss = hard_label_loss(student_logits, teacher_logits[0] if len(teacher_logits) == 1
                                   else ensemble_soft_targets(teacher_logits))
        elif len(teacher_logits) == 1:
            loss = kd_loss(student_logits, teacher_logits[0], y, self.temperature, self.alpha, self.scale_by_t2)
        else:
            loss = ensemble_kd_loss(student_logits, teacher_logits, y, self.temperature, self.alpha)
        if self.hint is not None:
            loss = loss + hint_loss(student_features, teacher_features, self.hint[2]) * float(self.hint[3])
        return loss

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimizer step on the batch (x, y); returns the loss value."""
        self.student.train()
        loss = self.loss(x, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return float(loss.data)

    def fit(self, loader, epochs: int) -> list[float]:
        """Mean loss per epoch over `epochs` passes of loader."""
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Distiller.fit expects epochs a positive int, got {epochs!r}")
        history = []
        for _ in range(epochs):
            total, count = 0.0, 0
            for x, y in loader:
                total += self.step(x, y) * len(y)
                count += len(y)
            history.append(total / count)
        return history
