// The CUDA runtime API as the simulator implements it (cuda/sim/runtime.cpp): only what cuda/gpu uses.
#pragma once
#include "cuda_runtime.h"
