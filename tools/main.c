/* PLACEHOLDER CLI */
#include <stdio.h>
#include "kelp/kelp.h"
int main(void) { puts("kelp " KELP_VERSION_STRING); return 0; }
