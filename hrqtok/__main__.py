from hrqtok.cli import main

main()
