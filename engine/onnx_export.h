/* ONNX export of a graph, for inference in other runtimes (onnxruntime, TensorRT, OpenCV's dnn...).
 *
 * The file is an ONNX model of IR version 8 and default-domain opset 17 that computes what the graph computes in
 * inference mode: batch norm with its running statistics, dropout as the identity, no loss. It speaks PyTorch's
 * conventions, not kelp's: activations are NCHW, parameters are initializers under their PyTorch names and
 * layouts (convolution weights OIHW), so a kelp model and the same torchvision model export alike. The graph input
 * 0 is called "input" with shape [batch, C, H, W] (or [batch, F]), "batch" being a symbolic dimension; output 0 is
 * "logits"; further inputs and outputs keep their names. docs/model-format.md ("ONNX export") lists the operator
 * each layer type becomes. */
#ifndef KELP_ENGINE_ONNX_EXPORT_H
#define KELP_ENGINE_ONNX_EXPORT_H

#include "kelp/kelp.h"

#define KELP_ONNX_IR_VERSION 8
#define KELP_ONNX_OPSET 17

/* Writes `g` (its current weights) to `path` atomically: the target is replaced whole or left as it was.
 * producer_version is recorded as the model's producer_version, KELP_VERSION_STRING when NULL. A training graph is
 * exported as it would run in inference mode, and a loss node is left out. Failures name the file and, for a layer
 * or setting ONNX cannot express exactly, the node and the setting (KELP_ERR_UNSUPPORTED). */
kelp_status kelp_onnx_export(kelp_graph *g, const char *path, const char *producer_version);

#endif
