// SPDX-License-Identifier: MIT
// Placeholder: the console is being written (issue 14).
