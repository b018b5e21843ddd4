/* SPDX-License-Identifier: MIT */
#ifndef CCA_ROUTER_MODEL_H
#define CCA_ROUTER_MODEL_H

/*
 * Router model: the statistical second stage of the router (issue 16). The
 * contract is written by the implementation; this placeholder keeps
 * the build and the header test in place.
 */

#endif
