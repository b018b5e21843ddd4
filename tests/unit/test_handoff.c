/* SPDX-License-Identifier: MIT */
/* placeholder: being written (exit 77 = skipped) */
int main(void)
{
    return 77;
}
