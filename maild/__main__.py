from maild.cli.main import main

main()
