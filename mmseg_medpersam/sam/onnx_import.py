"""Recover a PyTorch state dict from an ONNX export of a SAM-family model, by the graph.

``torch.onnx`` keeps each module's path in its node names (``/layers.1/blocks.0/attn/qkv/
MatMul`` is ``layers.1.blocks.0.attn.qkv``) but not always in its initializers' names. What an
export does to the weights, and how each is undone here:

* a ``Linear`` becomes a ``MatMul`` with an unnamed weight stored transposed (in x out): the
  tensor feeding a module's ``MatMul`` is its ``weight``, transposed back;
* a conv followed by batch norm (TinyViT's ``Conv2d_BN``) is folded into one conv with a bias:
  the conv takes the folded weight and the batch norm becomes the identity plus that bias;
* ``LayerNorm2d``'s affine becomes ``Mul`` / ``Add`` with (C, 1, 1) constants;
* TinyViT's attention biases (a (heads, offsets) table indexed by relative offset) are
  constant-folded into one (heads, N, N) tensor: every offset is read back from it, and every
  copy of one offset must agree exactly;
* SAM's decoder tokens (``iou_token`` and ``mask_tokens``, concatenated) and ``no_mask_embed``
  become unnamed constants at the graph's root: found by what they feed.

Every tensor is assigned to a parameter by the node that consumes it, never by the order of the
initializers, and the result must fill the target module's state dict exactly (keys and shapes).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..structures.errors import OnnxImportError

StateDict = Dict[str, torch.Tensor]


def module_path(node_name: str) -> Tuple[str, str]:
    """('/patch_embed/seq/seq.0/c/Conv') -> ('patch_embed.seq.0.c', 'Conv').

    A called container appears as its own scope and then again as the prefix of its child's
    (``seq/seq.0``): the child's dotted name replaces the container's.
    """
    parts = [p for p in node_name.split('/') if p]
    if not parts:
        return '', ''
    op = parts.pop()
    path: List[str] = []
    for part in parts:
        if path and part.startswith(path[-1] + '.'):
            path[-1] = part
        else:
            path.append(part)
    return '.'.join(path), op


class OnnxGraph:
    """An ONNX model's tensors and who consumes / produces them."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.graph = graph
        self.initializers: Dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.constants: Dict[str, np.ndarray] = {}
        self.producer: Dict[str, object] = {}
        self.consumers: Dict[str, List[Tuple[object, int]]] = {}
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for i, name in enumerate(node.input):
                self.consumers.setdefault(name, []).append((node, i))
            if node.op_type == 'Constant':
                for attr in node.attribute:
                    if attr.name == 'value':
                        self.constants[node.output[0]] = numpy_helper.to_array(attr.t)
        self.inputs = {i.name for i in graph.input}

    def only_consumer(self, tensor: str) -> Tuple[object, int]:
        users = self.consumers.get(tensor, [])
        if len(users) != 1:
            raise OnnxImportError(f'tensor {tensor} has {len(users)} consumers, expected one')
        return users[0]

    def depends_on(self, tensor: str, graph_input: str) -> bool:
        """Whether ``tensor`` is computed from the graph input ``graph_input``."""
        seen, todo = set(), [tensor]
        while todo:
            name = todo.pop()
            if name == graph_input:
                return True
            if name in seen or name not in self.producer:
                continue
            seen.add(name)
            todo.extend(self.producer[name].input)
        return False


def _put(state: StateDict, key: str, value: np.ndarray) -> None:
    if key in state:
        raise OnnxImportError(f'two graph tensors map to {key}')
    state[key] = torch.from_numpy(np.array(value, copy=True))


def _scoped(prefixes: Mapping[str, str], path: str) -> str:
    """A graph scope as a target key (``transformer.x`` -> ``mask_decoder.transformer.x``)."""
    head = path.split('.')[0]
    if head in prefixes:
        return prefixes[head] + path
    if '' in prefixes:
        return prefixes[''] + path
    raise OnnxImportError(f'graph scope {path!r} belongs to no known module')


def import_weights(graph: OnnxGraph, target: nn.Module, prefixes: Mapping[str, str],
                   name_prefixes: Mapping[str, str]) -> StateDict:
    """A state dict for ``target`` from every weight tensor of ``graph`` (see module doc).

    Args:
        graph: the ONNX graph.
        target: the module whose state dict is filled (it gives the batch norms' eps and
            TinyViT's attention-bias index tables).
        prefixes: graph scope head -> key prefix in ``target`` ('' for every other scope).
        name_prefixes: prefix of a named initializer -> what replaces it in ``target``'s keys.
    """
    modules = dict(target.named_modules())
    state: StateDict = {}
    for name, value in graph.initializers.items():
        if not name.startswith('onnx::'):  # the exporter kept the parameter's name
            old = next((p for p in name_prefixes if name.startswith(p)), None)
            if old is None:
                raise OnnxImportError(f'initializer {name} has no known prefix')
            _put(state, name_prefixes[old] + name[len(old):], value)
            continue
        node, index = graph.only_consumer(name)
        path, op = module_path(node.name)
        if not path:
            _import_root_constant(graph, node, value, state, target)
            continue
        key = _scoped(prefixes, path)
        if op == 'MatMul' and index == 1 and value.ndim == 2:  # Linear: x @ W.T
            _put(state, key + '.weight', value.T)
        elif op in ('Conv', 'ConvTranspose'):
            if index == 1:
                _put(state, key + '.weight', value)
            elif key.endswith('.c') and isinstance(modules.get(key[:-2] + '.bn'),
                                                    nn.BatchNorm2d):
                _folded_batch_norm(state, key[:-2] + '.bn', value, modules[key[:-2] + '.bn'])
            else:
                _put(state, key + '.bias', value)
        elif op == 'Mul' and value.ndim == 3 and value.shape[1:] == (1, 1):  # LayerNorm2d
            _put(state, key + '.weight', value.reshape(-1))
        elif op.startswith('Add') and value.ndim == 3 and value.shape[1:] == (1, 1):
            _put(state, key + '.bias', value.reshape(-1))
        else:
            raise OnnxImportError(f'no rule for initializer {name} {value.shape} at {node.name}')
    _import_attention_biases(graph, state, modules, prefixes)
    return state


def _folded_batch_norm(state: StateDict, key: str, bias: np.ndarray,
                       bn: nn.BatchNorm2d) -> None:
    """A batch norm that adds ``bias`` and nothing else (its scale is already in the conv).

    (x - 0) / sqrt((1 - eps) + eps) * 1 + bias, exact up to one rounding of the variance.
    """
    ones = np.ones_like(bias)
    _put(state, key + '.weight', ones)
    _put(state, key + '.bias', bias)
    _put(state, key + '.running_mean', np.zeros_like(bias))
    _put(state, key + '.running_var', ones - np.float32(bn.eps))
    state[key + '.num_batches_tracked'] = torch.tensor(0)


def _import_root_constant(graph: OnnxGraph, node, value: np.ndarray, state: StateDict,
                          target: nn.Module) -> None:
    """SAM decoder constants at the graph root: the output tokens and ``no_mask_embed``."""
    decoder = getattr(target, 'mask_decoder', None)
    if decoder is not None and node.op_type == 'Expand' and value.ndim == 3:
        tokens = value[0]
        if tokens.shape[0] != 1 + decoder.num_mask_tokens:
            raise OnnxImportError(f'{node.name}: {tokens.shape[0]} output tokens, expected '
                                  f'1 + {decoder.num_mask_tokens}')
        _put(state, 'mask_decoder.iou_token.weight', tokens[:1])
        _put(state, 'mask_decoder.mask_tokens.weight', tokens[1:])
        return
    other = [t for t in node.input if t not in graph.initializers]
    if (node.op_type == 'Mul' and value.ndim == 4 and value.shape[2:] == (1, 1)
            and any(graph.depends_on(t, 'has_mask_input') for t in other)):
        _put(state, 'prompt_encoder.no_mask_embed.weight', value.reshape(1, -1))
        return
    raise OnnxImportError(f'no rule for the root constant {value.shape} at {node.name}')


def _import_attention_biases(graph: OnnxGraph, state: StateDict, modules: Mapping[str, nn.Module],
                             prefixes: Mapping[str, str]) -> None:
    """TinyViT: read each (heads, offsets) table back from its folded (heads, N, N) form."""
    for out, table in graph.constants.items():
        if table.ndim != 3:
            continue
        for node, _ in graph.consumers.get(out, []):
            path, op = module_path(node.name)
            head = path.split('.')[0]
            key = prefixes.get(head, prefixes.get('', '')) + path
            attn = modules.get(key)
            if op != 'Add' or not hasattr(attn, 'attention_bias_idxs'):
                continue
            idxs = attn.attention_bias_idxs.numpy()
            heads, offsets = attn.attention_biases.shape
            if table.shape != (heads, *idxs.shape):
                raise OnnxImportError(f'{node.name}: attention bias {table.shape}, expected '
                                      f'{(heads, *idxs.shape)}')
            biases = np.zeros((heads, offsets), dtype=table.dtype)
            biases[:, idxs.reshape(-1)] = table.reshape(heads, -1)
            if not np.array_equal(biases[:, idxs], table):
                raise OnnxImportError(f'{node.name}: the folded attention bias is not a '
                                      'function of the relative offset')
            _put(state, key + '.attention_biases', biases)


__all__ = ['OnnxImportError', 'OnnxGraph', 'module_path', 'import_weights']
