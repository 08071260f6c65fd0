from portrait_studio.cli import main

main()
