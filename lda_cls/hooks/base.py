"""The hook protocol of the one trainer (lda_cls/engine.py), after detectron2's ``HookBase``
(detectron2/engine/train_loop.py): the loop calls every hook, in order, at five points.

    hook.before_train()
    for epoch in range(start, stop):
        hook.before_epoch(epoch)          # after the model is put in training mode
        for each step: run the step, then hook.after_step()
        hook.after_epoch(epoch)
    hook.after_train()                    # also when training stops with an exception

``epoch`` is 0-based. ``self.trainer`` is set when the trainer registers the hook; a hook reads the run
in progress from ``trainer.state`` (engine.TrainState) and its public attributes. Hooks built for a
method (lda_cls/methods) need no trainer: they are given what they act on.
"""

__all__ = ["HookBase"]


class HookBase:
    trainer = None  # set by Trainer.register_hooks (a weak proxy: the trainer owns its hooks)

    def before_train(self) -> None:
        pass

    def before_epoch(self, epoch: int) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self, epoch: int) -> None:
        pass

    def after_train(self) -> None:
        pass
