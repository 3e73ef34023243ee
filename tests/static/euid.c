/* Prints the effective uid it runs with.  Built static (tests copy it into layers, where no C
 * library is), so a test can see whether a set-id bit took effect. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("%u\n", (unsigned)geteuid());
	return 0;
}
