"""SGD with momentum and timm's warm-up + cosine / multi-step schedules, stepped every iteration."""
import torch
from timm.scheduler import create_scheduler_v2

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # frozen blocks (Places-LT) stay out
    return torch.optim.SGD(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
                           weight_decay=cfg.SOLVER.WEIGHT_DECAY, nesterov=cfg.SOLVER.NESTEROV)


def build_scheduler(cfg, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
    """timm scheduler; call ``step_update(global_step)`` after each iteration.

    "multistep": lr = BASE_LR * DECAY_RATE^(milestones passed), e.g. CIFAR-LT 0.1 -> 1e-3 at
    epoch 160 -> 1e-5 at 180; "cosine": from BASE_LR to MIN_LR over SOLVER.EPOCHS. Both after a
    linear warm-up from WARMUP_LR over WARMUP_EPOCHS.
    """
    if cfg.SOLVER.SCHEDULER not in ("cosine", "multistep"):
        raise ValueError(f"SOLVER.SCHEDULER must be 'cosine' or 'multistep', got {cfg.SOLVER.SCHEDULER!r}")
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.SOLVER.SCHEDULER, num_epochs=cfg.SOLVER.EPOCHS,
        decay_milestones=list(cfg.SOLVER.MILESTONES), decay_rate=cfg.SOLVER.DECAY_RATE,
        min_lr=cfg.SOLVER.MIN_LR, warmup_lr=cfg.SOLVER.WARMUP_LR, warmup_epochs=cfg.SOLVER.WARMUP_EPOCHS,
        step_on_epochs=False, updates_per_epoch=iters_per_epoch)
    return scheduler
