/* kiln: deep-learning inference optimizer and runtime. Umbrella header. */
#ifndef KILN_KILN_H
#define KILN_KILN_H
#include "kiln/types.h"
#include "kiln/network.h"
#include "kiln/runtime.h"
#include "kiln/builder.h"
#endif
