"""A quiet console for the tools: a short header, progress, warnings and errors; the rest goes
to the run's log file.

mmengine's Runner logs the environment, the whole config and the hook table (some 200 lines)
while it is built, and the metrics again after the test epoch; the metrics also print once per
metric and once by the loop. ``QuietRunner`` keeps all of it in the log file mmengine writes
under the work dir (``<work_dir>/<timestamp>/<timestamp>.log``) and off the console: INFO
records are kept from the console while the Runner is built and inside ``file_only`` blocks
(the test loop's evaluation and its after-epoch hooks). Warnings and errors always reach it.
A plain ``Runner`` (``--verbose``, mmseg's own ``tools/test.py``) prints everything as before.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, List, Optional

from mmengine.logging import MMLogger
from mmengine.runner import Runner

from ..structures.references import OneShotReferences
from ..utils.naming import image_name


class ConsoleFilter(logging.Filter):
    """On a console handler: while ``quiet``, only records of WARNING and above pass."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__('medpersam-console')
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.quiet or record.levelno >= logging.WARNING


def _console_handlers(logger: logging.Logger) -> List[logging.Handler]:
    """The handlers that write to a terminal stream (not to the log file)."""
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def console_filters(logger: Optional[logging.Logger] = None) -> List[ConsoleFilter]:
    """The ``ConsoleFilter``s on ``logger``'s console (the current MMLogger's by default)."""
    if logger is None:
        logger = MMLogger.get_current_instance()
    return [f for h in _console_handlers(logger) for f in h.filters
            if isinstance(f, ConsoleFilter)]


@contextmanager
def file_only(logger: Optional[logging.Logger] = None) -> Iterator[None]:
    """INFO records logged inside go to the log file only, where a ``QuietRunner`` set up the
    console (elsewhere nothing changes)."""
    filters = console_filters(logger)
    before = [f.quiet for f in filters]
    for f in filters:
        f.quiet = True
    try:
        yield
    finally:
        for f, quiet in zip(filters, before):
            f.quiet = quiet


class QuietRunner(Runner):
    """mmengine's ``Runner`` with a quiet console (see the module docstring)."""

    def build_logger(self, log_level='INFO', log_file=None, **kwargs) -> MMLogger:
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        self._console = ConsoleFilter(quiet=True)  # until the Runner is built
        for handler in _console_handlers(logger):
            handler.addFilter(self._console)
        return logger

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._console.quiet = False

    @property
    def log_file(self) -> Optional[str]:
        """The log file mmengine writes for this run (environment, config, every message)."""
        files = [h.baseFilename for h in self.logger.handlers
                 if isinstance(h, logging.FileHandler)]
        return files[0] if files else None


def run_header(runner: Runner, config: str, checkpoint: Optional[str] = None) -> str:
    """What a run is, in a few lines: config, method, model and its weights, data, device and
    the log file."""
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    method = getattr(model, 'method_name', type(model).__name__)
    sam = getattr(model, 'sam', None)
    if sam is None:
        weights = 'none (no promptable model)'
    else:
        from ..sam.builder import get_arch
        name = get_arch(sam.arch).title
        source = getattr(sam, 'checkpoint', None) or checkpoint
        weights = (f'{name}, weights {source}' if source else
                   name if 'random' in name else f'{name}, random weights')
    dataset = runner.test_dataloader.dataset
    refs = ', '.join(image_name(r)
                     for r in (OneShotReferences.of(dataset.get_data_info(0)) or ())
                     ) if len(dataset) else ''
    data = f'{type(dataset).__name__}: {len(dataset)} targets'
    data += f' in {dataset.data_root}' if getattr(dataset, 'data_root', None) else ''
    data += f', reference {refs}' if refs else ''
    param = next(iter(model.parameters()), None)
    device = str(param.device) if param is not None else 'cpu'
    lines = [f'config  {config}', f'method  {method}', f'model   {weights}',
             f'data    {data}', f'device  {device}']
    log_file = getattr(runner, 'log_file', None)
    if log_file:
        lines.append(f'log     {log_file} (environment, config, details)')
    return '\n'.join(lines)


__all__ = ['ConsoleFilter', 'QuietRunner', 'console_filters', 'file_only', 'run_header']
