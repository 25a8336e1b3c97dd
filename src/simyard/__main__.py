from simyard.cli import main

main()
