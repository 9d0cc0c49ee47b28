from recforge.cli import main

main()
