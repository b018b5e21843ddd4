/* SPDX-License-Identifier: MIT */
/* Placeholder: written in this change. */
int main(void)
{
    return 77;
}
